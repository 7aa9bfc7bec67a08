"""The `music` source (components/ingest/music.py): melodies rendered by Debian's real FluidSynth from the
GM SoundFont, the attributes set by construction and heard in the audio (F0 by Praat), through a real
ingest and the seeds stage to the evaluation's music questions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.config import SeedsConfig
from components.evaluate.mcq import build_mcq
from components.ingest.decode import Limits
from components.ingest.embedded import EspeakSettings
from components.ingest.music import FAMILIES, REGISTERS, TEMPOS, MusicSettings, music_plan, prepare_music
from components.ingest.run import MANIFEST, ingest
from components.ingest.sources import Sources, source_kind
from components.records import read_jsonl, read_seeds
from components.seeds.learnability import ProbeSpec
from components.seeds.run import build_seeds
from components.vocab import INSTRUMENT_FAMILIES, MUSIC_QUESTIONS, REGISTERS as REGISTER_WORDS, TEMPOS as TEMPO_WORDS


def test_the_plan_covers_every_instrument_register_and_tempo_once() -> None:
    plan = music_plan(MusicSettings())
    assert list(FAMILIES) == INSTRUMENT_FAMILIES  # the words the label and evaluate stages ask about
    assert list(REGISTERS) == REGISTER_WORDS == MUSIC_QUESTIONS["Pitch register"][1]
    assert list(TEMPOS) == TEMPO_WORDS == MUSIC_QUESTIONS["Tempo"][1]
    combos = Counter((p["program"], p["register"], p["tempo"]) for p in plan)
    assert len(plan) == 288 and len(combos) == 288 and len({p["program"] for p in plan}) == 32
    for p in plan:
        low, high = REGISTERS[p["register"]]
        assert all(low <= n <= high for n in p["notes"])
        assert TEMPOS[p["tempo"]][0] <= p["bpm"] <= TEMPOS[p["tempo"]][1]
        assert len(p["notes"]) == int(4.0 * p["bpm"] / 60) + 1  # one note a beat over the clip
    assert music_plan(MusicSettings()) == plan and music_plan(MusicSettings(seed=1)) != plan


def _f0(path: Path) -> float:
    import parselmouth

    wav, sr = sf.read(path, dtype="float64")
    pitch = parselmouth.Sound(wav, sampling_frequency=sr).to_pitch(pitch_floor=60.0, pitch_ceiling=1500.0)
    f0 = pitch.selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def test_rendered_clips_are_heard_as_planned(tmp_path: Path) -> None:
    """Real FluidSynth: 4 s of 16 kHz mono, the same bytes twice, a cached set reused, and the register
    audible: the median F0 of each instrument's Low, Medium and High melodies rises (Praat)."""
    settings = MusicSettings(clips=72)  # each family's first instrument in every register and tempo
    cands = prepare_music(settings, tmp_path / "a")
    assert len(cands) == 72 and len({c.metadata["music"]["family"] for c in cands}) == 8 and {c.path.suffix for c in cands} == {".wav"}
    again = prepare_music(settings, tmp_path / "b")
    assert [c.path.read_bytes() for c in cands] == [c.path.read_bytes() for c in again]
    mtime = cands[0].path.stat().st_mtime_ns
    assert prepare_music(settings, tmp_path / "a")[0].path.stat().st_mtime_ns == mtime  # rendered once
    for c in cands:
        wav, sr = sf.read(c.path)
        assert sr == 16000 and wav.ndim == 1 and len(wav) == 4 * 16000 and np.abs(wav).max() > 0.5
        assert (c.path.with_suffix(".mid")).is_file() and c.metadata["kind"] == "music"
    by = {(c.metadata["music"]["program"], c.metadata["music"]["register"], c.metadata["music"]["tempo"]): c for c in cands}
    for program in {p for p, _, _ in by}:
        for tempo in TEMPOS:
            f0 = [_f0(by[program, register, tempo].path) for register in REGISTERS]
            assert f0[0] < f0[1] < f0[2], (program, tempo, f0)


def test_through_ingest_and_seeds_to_music_questions(tmp_path: Path, embedded_models: dict[str, Path]) -> None:
    """The source by name through the real ingest and seeds stage: music rows keep their plan's attributes,
    Whisper does not transcribe them, the held-out ones get instrument, register and tempo questions."""
    assert source_kind("music") == "music"
    cands = list(Sources(["music"], None, EspeakSettings(espeak_clips=0), cache=tmp_path / "cache",
                         music=MusicSettings(clip_seconds=2.0)))
    ingest(cands, tmp_path / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=2, show_progress=False)
    probe = ProbeSpec(96, str(embedded_models["whisper-tiny.en"]), (2, 4), "fp32", None)
    report = build_seeds(tmp_path / "ingest", tmp_path, tmp_path / "seeds", embedded_models["whisper-tiny.en"],
                         SeedsConfig(whisper_batch_size=4), show_progress=False, probe=probe)
    assert report["music"] == report["clips"] == 288 and report["speech"] == 0
    probed = report["learnability"]["attributes"]
    assert set(probed) == {"Instrument", "Pitch register", "Tempo"} and report["learnability"]["clips"]["test"] == 32
    # heard on held-out instruments (measured 0.94 and 0.66 of 32, chance 0.33; instrument family 0.28, chance 0.125)
    assert probed["Pitch register"]["probe"] >= 0.75 and probed["Tempo"]["probe"] >= 0.5
    rows = read_seeds(tmp_path / "seeds")
    plan = {m["id"]: m["metadata"]["music"] for m in read_jsonl(tmp_path / "ingest" / MANIFEST)}
    for r in rows:
        assert r["kind"] == "music" and r["transcript"] is None and r["whisper_transcript"] is None
        attrs = {k: v["value"] for k, v in r["attributes"].items()}
        m = plan[r["id"]]
        assert attrs == {"Instrument": m["family"], "Pitch register": m["register"], "Tempo": m["tempo"]}
        assert r["seed_description"] == (f"[00:00-00:02] (Instrument: {m['family']}, Pitch register: {m['register']}, "
                                         f"Tempo: {m['tempo']}, Duration: 2.0)")
    assert len({r["speaker"] for r in rows if r["split"] == "test"} & {r["speaker"] for r in rows if r["split"] == "train"}) == 0
    questions = build_mcq(rows)
    test = [r for r in rows if r["split"] == "test"]
    assert questions and len(questions) == 3 * len(test) and {q["task"] for q in questions} == {"music"}
    for q in questions:
        assert q["answer"] in q["choices"] and len(q["choices"]) == {"Instrument": 4}.get(q["sub-category"], 3)


def test_a_missing_soundfont_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.ingest import music

    monkeypatch.setattr(music, "SOUNDFONT", tmp_path / "none.sf2")
    with pytest.raises(ValueError, match="timgm6mb-soundfont"):
        prepare_music(MusicSettings(clips=1), tmp_path)
