"""Adapter: the built-in real corpus, from Debian packages only.

- asterisk English prompts (one recorded female voice) with their published transcripts;
- freedesktop event sounds (category = sound name; the channel test clips are speech);
- alsa-utils test sounds;
- espeak-ng speech generated with known voice (gender), pitch, speed and volume, some with noise.
The espeak clips are generated once into a cache keyed by espeak's version and the settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from components.atomic import atomic_dir
from components.ingest import asterisk
from components.ingest.candidates import Candidate
from components.ingest.directory import prepare_directory
from components.modeldir import user_cache

FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
ALSA = Path("/usr/share/sounds/alsa")
SENTENCES = Path(__file__).with_name("data") / "sentences.txt"
LEVELS = ["Very low", "Low", "Medium", "High", "Very high"]
SPEEDS = ["Very slow", "Slow", "Medium", "Fast", "Very fast"]
# espeak-ng settings per level: pitch (0-99) and speed (words per minute).
ESPEAK_PITCH = [10, 30, 50, 70, 90]
ESPEAK_WPM = [90, 125, 165, 210, 260]
# Target speech RMS level (dBFS) per volume level.
VOLUME_DBFS = [-44.0, -36.0, -28.0, -20.0, -13.0]
# espeak-ng voice variants by gender, cut into GROUPS groups. Several voices per group: a model
# trained on one voice per gender learns those voices, not gender, and a held-out voice pair is a coin
# toss (#7). Near-duplicate variants (steph2/3, linda = belinda, Hugo = Henrique, Lee = Andy) are left out
# so that no voice is heard on both sides of the split under another name.
VOICES = {
    "Male": [["m1", "m6", "Andy"], ["m2", "m7", "Denis"], ["m3", "m8", "Diogo"],
             ["m4", "Henrique", "Marco"], ["m5", "antonio", "michel"]],
    "Female": [["f1", "Alicia", "grandma"], ["f2", "Andrea", "steph"], ["f3", "Annie", "aunty"],
               ["f4", "anika"], ["f5", "belinda"]],
}

CARD = """# Corpus card

Sources of this ingest run: {sources}.

## The embedded corpus

Built by `desta ingest --source embedded` from Debian packages; nothing is downloaded.

| dataset | source | what | licence |
|---|---|---|---|
| asterisk-en | Debian `asterisk-core-sounds-en-wav` {asterisk_version} (+ transcripts from `asterisk-core-sounds-en`) | real recorded telephony prompts, one female voice (Allison), 8 kHz | CC-BY-SA-3.0 |
| freedesktop | Debian `sound-theme-freedesktop` {freedesktop_version} | real event sounds (.oga); the audio-channel clips are speech | CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ per file (see /usr/share/doc/sound-theme-freedesktop/copyright) |
| alsa | Debian `alsa-utils` {alsa_version} | channel test recordings and noise | GPL-2 |
| espeak | generated with Debian `espeak-ng` {espeak_version} | synthetic speech, known voice/gender, pitch, speed, volume, added noise; sentences written for this project | generated output; sentences CC0 |
| drumkits (source `drumkits`) | Debian `hydrogen-drumkits` {drumkits_version} | real one-shot drum recordings of 14 kits; category (kick drum, snare drum, hi-hat, ...) from each kit's instrument names | per kit: GPL-2+, GPL-2, CC-BY-SA-3.0, CC-BY-3.0, CC0 (see /usr/share/doc/hydrogen-drumkits/copyright) |

Attribute truth for espeak clips is the generation setting (in each row's metadata under `synth`).
"""


@dataclass(frozen=True)
class EspeakSettings:
    espeak_clips: int = 300
    noise_fraction: float = 0.25
    seed: int = 0


def _deb_version(pkg: str) -> str:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return res.stdout.strip() or "not-installed"


def _sentences() -> list[str]:
    return [s.strip() for s in SENTENCES.read_text().splitlines() if s.strip() and not s.startswith("#")]


GROUPS = 5  # voice/sentence groups: a group's sentences are spoken only by its own voices


def _espeak_plan(settings: EspeakSettings) -> list[dict]:
    """Deterministic per-clip settings: voice, levels, sentence, noise.

    Sentences and voices come in GROUPS disjoint groups (2-3 voices per gender each), so a held-out
    split by speaker and by text can take whole groups without wasting any clip. A sentence's repeats
    go to the group's next voice.
    """
    rng = random.Random(settings.seed)
    sentences = _sentences()
    per_group = len(sentences) // GROUPS
    plan = []
    for i in range(settings.espeak_clips):
        gender = "Male" if i % 2 == 0 else "Female"
        s = (i // 2) % len(sentences)
        group = min(s // per_group, GROUPS - 1)
        voices = VOICES[gender][group]
        voice = voices[(s + (i // 2) // len(sentences)) % len(voices)]
        noisy = rng.random() < settings.noise_fraction
        plan.append(
            {
                "name": f"espeak-{i:05d}",
                "voice": voice,
                "gender": gender,
                "group": group,
                "pitch": rng.randrange(5),
                "speed": rng.randrange(5),
                "volume": rng.randrange(5),
                "text": sentences[s],
                "snr_db": round(rng.uniform(5.0, 20.0), 1) if noisy else None,
                "noise_seed": rng.randrange(2**31),
            }
        )
    return plan


def _speak(item: dict, out_wav: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        cmd = ["espeak-ng", "-v", f"en-us+{item['voice']}", "-p", str(ESPEAK_PITCH[item["pitch"]]),
               "-s", str(ESPEAK_WPM[item["speed"]]), "-w", raw.name, item["text"]]
        subprocess.run(cmd, check=True, capture_output=True)
        wav, sr = sf.read(raw.name, dtype="float64")
    voiced = wav[np.abs(wav) > 0.01 * np.abs(wav).max()] if wav.size else wav
    rms = math.sqrt(float(np.mean(voiced**2))) if voiced.size else 1e-9
    wav = wav * (10 ** (VOLUME_DBFS[item["volume"]] / 20) / rms)
    if item["snr_db"] is not None:
        noise = np.random.default_rng(item["noise_seed"]).standard_normal(wav.shape)
        wav = wav + noise * (10 ** (VOLUME_DBFS[item["volume"]] / 20) / 10 ** (item["snr_db"] / 20))
    peak = np.abs(wav).max()
    if peak > 0.99:  # keep it a valid recording; the level label stays the intended setting
        wav = wav * (0.99 / peak)
    sf.write(out_wav, wav.astype(np.float32), sr, subtype="PCM_16")


def build_espeak_corpus(settings: EspeakSettings, cache: Path) -> Path:
    """Generate (once) the espeak clips and their metadata.jsonl; returns the directory."""
    plan = _espeak_plan(settings)
    key = hashlib.sha256(
        json.dumps([_deb_version("espeak-ng"), asdict(settings), plan], sort_keys=True).encode()
    ).hexdigest()[:12]
    target = cache / f"espeak-{key}"
    if (target / "metadata.jsonl").is_file():
        return target
    with atomic_dir(target) as tmp:
        rows = []
        for item in plan:
            _speak(item, tmp / f"{item['name']}.wav")
            rows.append({
                "file": f"{item['name']}.wav",
                "kind": "speech",
                "transcript": item["text"],
                "speaker": f"espeak-{item['voice']}",
                "gender": item["gender"],
                "emotion": "Neutral",
                "language": "en",
                "synth": {
                    "voice": item["voice"],
                    "pitch": LEVELS[item["pitch"]],
                    "speed": SPEEDS[item["speed"]],
                    "volume": LEVELS[item["volume"]],
                    "espeak_pitch": ESPEAK_PITCH[item["pitch"]],
                    "espeak_wpm": ESPEAK_WPM[item["speed"]],
                    "rms_dbfs": VOLUME_DBFS[item["volume"]],
                    "snr_db": item["snr_db"],
                },
            })
        (tmp / "metadata.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return target


def _asterisk_candidates() -> list[Candidate]:
    known = asterisk.read_transcripts()
    out = []
    for wav in sorted(asterisk.SOUNDS_EN.glob("*.wav")):
        text = known.get(wav.stem)
        if text and asterisk.is_speech(text):
            meta = {"kind": "speech", "transcript": text, "speaker": "asterisk-allison", "gender": "Female",
                    "emotion": "Neutral", "language": "en"}
        elif text:
            meta = {"kind": "sound", "category": text.strip("[] ").removeprefix("this is a ").strip()}
        else:
            meta = {}  # no published transcript: seeds will transcribe and decide speech vs sound
        out.append(Candidate(str(wav), "asterisk-en", path=wav, metadata=meta))
    return out


def _freedesktop_candidates() -> list[Candidate]:
    out = []
    for oga in sorted(FREEDESKTOP.glob("*.oga")):
        if oga.stem.startswith("audio-channel-"):
            words = oga.stem.removeprefix("audio-channel-").replace("-", " ")
            meta = {"kind": "speech", "transcript": words.capitalize() + ".", "language": "en"}
        else:
            meta = {"kind": "sound", "category": oga.stem.replace("-", "_")}
        out.append(Candidate(str(oga), "freedesktop", path=oga, metadata=meta))
    return out


def _alsa_candidates() -> list[Candidate]:
    out = []
    for wav in sorted(ALSA.glob("*.wav")):
        if wav.stem == "Noise":
            meta = {"kind": "sound", "category": "noise"}
        else:
            meta = {"kind": "speech", "transcript": wav.stem.replace("_", " ") + ".", "language": "en"}
        out.append(Candidate(str(wav), "alsa", path=wav, metadata=meta))
    return out


def embedded_candidates(settings: EspeakSettings, cache: Path) -> list[Candidate]:
    """Every input of the embedded corpus (Debian audio + generated espeak clips)."""
    espeak_dir = build_espeak_corpus(settings, cache)
    return (
        _asterisk_candidates()
        + _freedesktop_candidates()
        + _alsa_candidates()
        + prepare_directory(espeak_dir, dataset="espeak")
    )


def corpus_card(sources: list[str]) -> str:
    """The card for an ingest run: its sources, and what the embedded corpus holds and its licences."""
    return CARD.format(
        sources=", ".join(f"`{s}`" for s in sources),
        asterisk_version=_deb_version("asterisk-core-sounds-en-wav"),
        freedesktop_version=_deb_version("sound-theme-freedesktop"),
        alsa_version=_deb_version("alsa-utils"),
        espeak_version=_deb_version("espeak-ng"),
        drumkits_version=_deb_version("hydrogen-drumkits"),
    )


def default_cache() -> Path:
    return user_cache("corpus")
