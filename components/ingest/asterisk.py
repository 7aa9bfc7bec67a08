"""The asterisk core sound prompts (Debian): real recorded speech with known transcripts."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

SOUNDS_EN = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS_EN = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
_LINE = re.compile(r"^([^;:\s][^:]*):\s*(.*)$")


def read_transcripts(path: Path = TRANSCRIPTS_EN) -> dict[str, str]:
    """`name: transcript` lines -> {name: transcript}; bracketed entries ([beep]) are non-speech."""
    opener = gzip.open if path.suffix == ".gz" else open
    out: dict[str, str] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE.match(line.strip())
            if m and m.group(2):
                out[m.group(1).strip()] = m.group(2).strip()
    return out


def is_speech(transcript: str) -> bool:
    """Asterisk marks tones and effects as `[a description]`."""
    return not transcript.startswith("[")


def speech_prompts(sounds: Path = SOUNDS_EN, transcripts: Path = TRANSCRIPTS_EN) -> list[tuple[Path, str]]:
    """(wav, transcript) for every top-level English prompt that is speech, sorted by name."""
    known = read_transcripts(transcripts)
    return [
        (wav, known[wav.stem])
        for wav in sorted(sounds.glob("*.wav"))
        if wav.stem in known and is_speech(known[wav.stem])
    ]
