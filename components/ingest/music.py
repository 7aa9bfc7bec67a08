"""Adapter: a music set rendered with FluidSynth from Debian's General MIDI SoundFont (`timgm6mb-soundfont`),
with instrument family, pitch register and tempo known by construction.

Each clip is a short melody on one GM instrument: notes of a major scale in the register's range, one note
a beat at the tempo, `clip_seconds` long. The families are General MIDI's own (four instruments each);
the instrument is the clip's `speaker`, so the held-out split keeps whole instruments out of training
(another trumpet, another organ), as it keeps voices and drum kits out. The MIDI file of every clip is
kept beside its audio. Rendered once into a cache keyed by FluidSynth's and the SoundFont's versions
and the plan; the SoundFont is GPL-2 (/usr/share/doc/timgm6mb-soundfont/copyright).
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from components.ingest.candidates import Candidate
from components.ingest.generated import METADATA, deb_version, generated_set
from components.records import jsonl_rows

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
DATASET = "music"
RATE = 16000
# General MIDI families (program numbers 0-based), four instruments of each; the names are
# components/vocab.py's INSTRUMENT_FAMILIES, which the label and evaluate stages ask about. Celesta,
# glockenspiel, music box and church organ are left out: their melodies' F0 (Praat) does not follow the register.
FAMILIES: dict[str, tuple[int, ...]] = {
    "Piano": (0, 1, 2, 4),                  # acoustic grand, bright acoustic, electric grand, electric piano 1
    "Mallet percussion": (11, 12, 13, 15),  # vibraphone, marimba, xylophone, dulcimer
    "Organ": (16, 17, 20, 21),              # drawbar, percussive, reed organ, accordion
    "Guitar": (24, 25, 26, 27),             # nylon, steel, jazz, clean electric
    "Strings": (40, 41, 42, 44),            # violin, viola, cello, tremolo strings
    "Brass": (56, 57, 59, 60),              # trumpet, trombone, muted trumpet, French horn
    "Reed": (64, 65, 68, 71),               # soprano sax, alto sax, oboe, clarinet
    "Flute": (72, 73, 74, 75),               # piccolo, flute, recorder, pan flute
}
# MIDI note ranges with gaps between them, so no melody sits on a border.
REGISTERS = {"Low": (40, 52), "Medium": (57, 69), "High": (74, 86)}
TEMPOS = {"Slow": (60, 76), "Medium": (100, 116), "Fast": (150, 176)}  # beats per minute
MAJOR = (0, 2, 4, 5, 7, 9, 11)


@dataclass(frozen=True)
class MusicSettings:
    clips: int = 288  # 32 instruments x 3 registers x 3 tempos = each combination once
    clip_seconds: float = 4.0
    seed: int = 0


def _melody(rng: random.Random, low: int, high: int, n: int) -> list[int]:
    """`n` notes of a random major scale in [low, high], a step or two at a time."""
    root = rng.randrange(12)
    scale = [p for p in range(low, high + 1) if (p - root) % 12 in MAJOR]
    i, notes = rng.randrange(len(scale)), []
    for _ in range(n):
        notes.append(scale[i])
        i = min(len(scale) - 1, max(0, i + rng.choice((-2, -1, 1, 2))))
    return notes


def music_plan(settings: MusicSettings) -> list[dict]:
    """Deterministic per-clip settings: every (instrument, register, tempo) in turn, a melody each."""
    rng = random.Random(settings.seed)
    # Families in turn, then registers and tempos, then each family's next instrument: any first 72 clips
    # cover every family, register and tempo.
    combos = [(family, programs[k], register, tempo) for k in range(4) for register in REGISTERS for tempo in TEMPOS
              for family, programs in FAMILIES.items()]
    plan = []
    for i in range(settings.clips):
        family, program, register, tempo = combos[i % len(combos)]
        bpm = rng.randint(*TEMPOS[tempo])
        notes = _melody(rng, *REGISTERS[register], n=int(settings.clip_seconds * bpm / 60) + 1)
        plan.append({"name": f"music-{i:05d}", "family": family, "program": program, "register": register,
                     "tempo": tempo, "bpm": bpm, "notes": notes, "velocity": rng.randint(80, 110)})
    return plan


def _midi(item: dict, path: Path) -> None:
    import mido

    ticks = 480
    mid = mido.MidiFile(ticks_per_beat=ticks)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(item["bpm"])))
    track.append(mido.Message("program_change", program=item["program"]))
    for note in item["notes"]:  # 90 % of a beat sounding, then a short gap: each onset audible
        track.append(mido.Message("note_on", note=note, velocity=item["velocity"], time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=ticks * 9 // 10))
        track.append(mido.Message("note_off", note=note, velocity=0, time=ticks // 10))
    mid.save(str(path))


def _render(item: dict, out_dir: Path, seconds: float) -> None:
    """MIDI -> FluidSynth (no reverb or chorus) -> mono 16 kHz, cut to `seconds`, peak at -3 dBFS."""
    mid, raw = out_dir / f"{item['name']}.mid", out_dir / f"{item['name']}.raw.wav"
    _midi(item, mid)
    cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(RATE), "-F", str(raw),
           "-T", "wav", str(SOUNDFONT), str(mid)]
    subprocess.run(cmd, check=True, capture_output=True)
    wav, _ = sf.read(raw, dtype="float64", always_2d=True)
    raw.unlink()
    wav = wav.mean(axis=1)[: int(seconds * RATE)]
    peak = float(np.abs(wav).max())
    if peak == 0:
        raise ValueError(f"FluidSynth rendered silence for program {item['program']} ({SOUNDFONT})")
    sf.write(out_dir / f"{item['name']}.wav", (wav * (0.7 / peak)).astype(np.float32), RATE, subtype="PCM_16")


def build_music_set(settings: MusicSettings, cache: Path) -> Path:
    """Render (once) the music clips, their MIDI files and metadata.jsonl; returns the directory."""
    if not SOUNDFONT.is_file():
        raise ValueError(f"no SoundFont at {SOUNDFONT}: install the Debian packages fluidsynth and timgm6mb-soundfont")
    plan = music_plan(settings)

    def write(tmp: Path) -> list[dict]:
        rows = []
        for item in plan:
            _render(item, tmp, settings.clip_seconds)
            rows.append({"file": f"{item['name']}.wav", "kind": "music", "speaker": f"gm-{item['program']:03d}",
                         "music": {k: item[k] for k in ("family", "program", "register", "tempo", "bpm", "notes",
                                                        "velocity")} | {"midi": f"{item['name']}.mid"}})
        return rows

    versions = [deb_version(p) for p in ("fluidsynth", "timgm6mb-soundfont")]
    return generated_set(cache, "music", [versions, asdict(settings), plan], write)


def prepare_music(settings: MusicSettings, cache: Path) -> list[Candidate]:
    """One music candidate per rendered clip (metadata: kind `music`, the instrument as speaker, and
    family, register and tempo under `music`); the MIDI files are not candidates."""
    folder = build_music_set(settings, cache)
    out = []
    for row in jsonl_rows(folder / METADATA):
        path = folder / row.pop("file")
        out.append(Candidate(str(path), DATASET, path=path, metadata=row))
    return out
