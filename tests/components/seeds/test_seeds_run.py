"""`build_seeds` on a small real ingest: Whisper transcripts, descriptions, references, report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.config import SeedsConfig
from components.evaluate.scorers import wer
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.run import ingest
from components.label.rows import aqa_row
from components.audio import read_audio_ref
from components.records import read_seeds
from components.seeds.run import build_seeds
from tests.conftest import VENV_BIN

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
KNOWN = {"agent-pass": "Please enter your password followed by the pound key.",
         "auth-thankyou": "Thank you.",
         "conf-onlyperson": "You are currently the only person in this conference."}
UNLABELLED = ("vm-goodbye", "Goodbye!")  # no metadata: Whisper must transcribe it
SOUND = Path("/usr/share/sounds/freedesktop/stereo/complete.oga")
# espeak's settings as metadata words: a deep, slow male voice whose setting says "Very high" pitch
SYNTH = {"text": "The train to the city leaves at seven in the morning.",
         "args": ["-v", "en-us+m3", "-p", "0", "-s", "80"], "words": {"pitch": "Very high", "speed": "Very slow", "volume": "Medium"}}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedded_models: dict[str, Path]) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    raw = root / "raw"
    raw.mkdir()
    meta = []
    for name, text in KNOWN.items():
        shutil.copy(ASTERISK / f"{name}.wav", raw / f"{name}.wav")
        meta.append({"file": f"{name}.wav", "transcript": text, "gender": "Female", "emotion": "neutral"})
    shutil.copy(ASTERISK / f"{UNLABELLED[0]}.wav", raw / f"{UNLABELLED[0]}.wav")
    shutil.copy(SOUND, raw / "complete.oga")
    subprocess.run(["espeak-ng", *SYNTH["args"], "-w", str(raw / "espeak.wav"), SYNTH["text"]], check=True, capture_output=True)
    meta.append({"file": "espeak.wav", "transcript": SYNTH["text"], "gender": "Male", "synth": SYNTH["words"]})
    meta.append({"file": "complete.oga", "kind": "sound", "category": "complete"})
    (raw / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    ingest(prepare_directory(raw), root / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=2, show_progress=False)
    report = build_seeds(root / "ingest", root, root / "seeds", embedded_models["whisper-tiny.en"],
                         SeedsConfig(whisper_batch_size=4), show_progress=False)
    return root, report


def test_rows_and_descriptions(seeded: tuple[Path, dict]) -> None:
    root, _ = seeded
    rows = {Path(json.loads(json.dumps(r))["audio"]).name: r for r in read_seeds(root / "seeds")}
    assert len(rows) == 6
    by_transcript = {r["transcript"]: r for r in rows.values()}
    thanks = by_transcript["Thank you."]
    assert thanks["kind"] == "speech" and thanks["transcript_source"] == "metadata"
    assert re.fullmatch(
        r"\[00:00-00:0\d\] Thank you\. \(Emotion: Neutral, Gender: Female, Pitch: [A-Za-z ]+, Volume: [A-Za-z ]+, "
        r"Speaking speed: [A-Za-z ]+, Duration: \ds\)", thanks["seed_description"]), thanks["seed_description"]
    sound = next(r for r in rows.values() if r["kind"] == "sound")
    assert sound["transcript"] is None
    assert re.fullmatch(r"\[00:00-00:0\d\] \(Audio category: complete, Duration: \d\.\d\)", sound["seed_description"])
    for r in rows.values():  # every reference resolves to the stored 16 kHz clip
        data, sr = read_audio_ref(root, r["audio"])
        assert sr == 16000 and abs(len(data) / sr - r["measured"]["duration"]) < 0.01
        assert set(r) >= {"id", "dataset", "audio", "transcript", "seed_description"}


def test_unlabelled_clip_is_transcribed_and_judged_speech(seeded: tuple[Path, dict]) -> None:
    root, _ = seeded
    row = next(r for r in read_seeds(root / "seeds") if r["transcript_source"] == "whisper")
    assert row["kind"] == "speech"
    assert wer([UNLABELLED[1]], [row["transcript"]]) == 0.0
    assert "Gender" in row["seed_description"]  # measured from pitch when metadata has none


def test_report_measures_whisper_on_known_transcripts(seeded: tuple[Path, dict]) -> None:
    root, report = seeded
    assert report["clips"] == 6 and report["sound"] == 1
    raw = report["whisper_wer_on_known_transcripts"]["raw"]
    assert raw["n"] == 4 and raw["wer"] < 0.2
    # every measurable attribute's words come from edges fitted to these 5 speech clips
    assert all(len(e["edges"]) == 4 and e["edges"] == sorted(e["edges"]) for e in report["attribute_edges"].values())
    words = report["attribute_words"]
    assert sum(words["Pitch"].values()) == sum(words["Volume"].values()) == 5 == report["speech"]
    agree = report["metadata_vs_signal"]
    assert agree["Gender"] == {"agree": 1.0, "n": 4}  # the corpus's "Female"/"Male": F0 agrees
    rows = list(read_seeds(root / "seeds"))
    espeak = next(r for r in rows if r["synth"])["attributes"]
    # the deepest, slowest clip of the five: the signal says so, and the settings' words are counted beside it
    assert espeak["Pitch"] == {"value": "Very low", "source": "signal", "metadata": "Very high"}
    assert espeak["Speaking speed"] == {"value": "Very slow", "source": "signal", "metadata": "Very slow"}
    assert agree["Pitch"] == {"agree": 0.0, "n": 1} and agree["Speaking speed"] == {"agree": 1.0, "n": 1}
    assert agree["Volume"] == {"agree": float(espeak["Volume"]["value"] == "Medium"), "n": 1}
    assert all(r["attributes"]["Pitch"]["source"] == "signal" for r in rows if r["kind"] == "speech")
    assert json.loads((root / "seeds" / "report.json").read_text()) == report


def test_model_text_whisper_puts_whispers_words_beside_every_clip(seeded: tuple[Path, dict],
                                                                  embedded_models: dict[str, Path]) -> None:
    """`seeds.model_text: whisper`: Whisper hears every clip (the sound too, and the known transcripts with
    no WER sample asked for), and the text a training row gives the model beside the audio is Whisper's, as
    evaluation gives it; by default it is the corpus's transcript. Nothing else in the seed rows changes."""
    root, _ = seeded
    build_seeds(root / "ingest", root, root / "seeds-whisper", embedded_models["whisper-tiny.en"],
                SeedsConfig(whisper_batch_size=4, report_clips_per_dataset=0, model_text="whisper"), show_progress=False)
    default = {r["id"]: r for r in read_seeds(root / "seeds")}
    heard = {r["id"]: r for r in read_seeds(root / "seeds-whisper")}
    assert heard.keys() == default.keys()
    for key, r in heard.items():
        d = default[key]
        assert r["whisper_transcript"] is not None and r["model_text"] == (r["whisper_transcript"] or None)
        assert d["model_text"] == d["transcript"]
        if d["whisper_transcript"] is not None:  # the default's WER sample: the same words
            assert r["whisper_transcript"] == d["whisper_transcript"]
        assert {f: v for f, v in r.items() if f not in ("model_text", "whisper_transcript")} == \
            {f: v for f, v in d.items() if f not in ("model_text", "whisper_transcript")}
        text = aqa_row(r, 0, "What is said?", "Words.")["messages"][1]["audios"][0]["text"]
        assert text == r["model_text"] and aqa_row(d, 0, "?", ".")["messages"][1]["audios"][0]["text"] == d["transcript"]
    assert any(d["whisper_transcript"] is None for d in default.values())  # the sound: heard only for model_text


def test_cli_without_ingest_output_is_a_clear_error(tmp_path: Path, repo: Path) -> None:
    res = subprocess.run([str(VENV_BIN / "desta"), "seeds", "--in", str(tmp_path / "nothing"), "--out",
                          str(tmp_path / "seeds"), "--params", str(repo / "params.yaml"), "--no-track"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 1
    assert "run `desta ingest` first" in res.stderr


def test_no_clip_audio_is_held_between_passes(tmp_path: Path, embedded_models: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver measures a clip and lets its samples go: of 24 clips read, at most two are alive at any
    read (each clip's samples are watched through a weak reference), where holding every clip, as the stage
    once did, keeps all 24 alive. The rows come out in manifest order."""
    import gc
    import weakref

    import numpy as np
    import soundfile as sf

    import components.seeds.run as seeds_run

    raw = tmp_path / "raw"
    raw.mkdir()
    meta = []
    for i in range(24):
        t = np.arange(2 * 16000) / 16000
        sf.write(raw / f"tone{i:02d}.wav", (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32), 16000)
        meta.append({"file": f"tone{i:02d}.wav", "kind": "sound", "category": f"tone{i % 4}"})
    (raw / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    ingest(prepare_directory(raw), tmp_path / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=2,
           show_progress=False)
    alive: list[weakref.ref] = []
    most = [0]

    def watched(data_root: Path, ref: str):
        gc.collect()
        most[0] = max(most[0], sum(r() is not None for r in alive) + 1)
        data, sr = read_audio_ref(data_root, ref)
        alive.append(weakref.ref(data))
        return data, sr

    monkeypatch.setattr(seeds_run, "read_audio_ref", watched)
    report = build_seeds(tmp_path / "ingest", tmp_path, tmp_path / "seeds", embedded_models["whisper-tiny.en"],
                         SeedsConfig(shard_rows=5), show_progress=False)
    assert report["clips"] == 24 and report["sound"] == 24 and len(alive) == 24
    assert most[0] <= 2, f"{most[0]} clips' samples alive at once"
    rows = read_seeds(tmp_path / "seeds")
    assert [r["attributes"]["Audio category"]["value"] for r in rows] == [f"tone{i % 4}" for i in range(24)]
    assert len(list((tmp_path / "seeds" / "shards").glob("seeds-*.jsonl"))) == 5
