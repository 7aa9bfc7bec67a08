"""The learnability probe (components/seeds/learnability.py) in `build_seeds`, on real espeak voices and
the embedded Whisper encoder: a heard attribute (gender) is predicted on held-out voices, a word that no
sound carries is not, and a re-run reads every clip's states back from the encoder cache."""

from __future__ import annotations

import json
import subprocess
from itertools import islice
from pathlib import Path

import pytest

from components.config import SeedsConfig
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.run import ingest
from components.records import MANIFEST, iter_jsonl, read_seeds
from components.seeds.learnability import ProbeSpec
from components.seeds.run import build_seeds

VOICES = {"en-us+m1": ("male", "20"), "en-us+m3": ("male", "30"), "en-us+m7": ("male", "10"),
          "en-us+f1": ("female", "70"), "en-us+f2": ("female", "80"), "en-us+f4": ("female", "60")}
WORDS = ("apples", "rivers", "candles", "mountains", "pencils", "windows")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 clips: six voices (three male, three female) x six sentences of their own (no text shared)."""
    root = tmp_path_factory.mktemp("probe")
    raw = root / "raw"
    raw.mkdir()
    meta = []
    for v, (voice, (gender, pitch)) in enumerate(VOICES.items()):
        for i, word in enumerate(WORDS):
            text = f"Voice {v} counts {i + 2} {word} near the old station."
            name = f"{voice.replace('+', '_')}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-p", pitch, "-w", str(raw / name), text],
                           check=True, capture_output=True)
            # "Emotion" here is a word no sound carries: it alternates within every voice, and the same
            # sentence number carries either word across voices (the encoder hears the words said)
            meta.append({"file": name, "transcript": text, "gender": gender, "speaker": voice,
                         "emotion": ("calm", "tense")[(v + i) % 2]})
    (raw / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    ingest(prepare_directory(raw), root / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=2, show_progress=False)
    return root


def test_probe_hears_gender_not_a_word_without_a_sound_and_reuses_the_cache(
        corpus: Path, embedded_models: dict[str, Path], tmp_path: Path) -> None:
    probe = ProbeSpec(36, str(embedded_models["whisper-tiny.en"]), (2, 4), "fp32", str(tmp_path / "states"))
    cfg = SeedsConfig(report_clips_per_dataset=0)

    def run(out: str) -> dict:
        return build_seeds(corpus / "ingest", corpus, corpus / out, embedded_models["whisper-tiny.en"], cfg,
                           test_fraction=0.34, show_progress=False, probe=probe)["learnability"]

    first = run("seeds")
    rows = [r for r in read_seeds(corpus / "seeds")]
    held_out = {r["speaker"] for r in rows if r["split"] == "test"}
    assert 1 <= len(held_out) < len(VOICES)
    assert first["clips"] == {"train": 36 - 6 * len(held_out), "test": 6 * len(held_out)}
    gender, emotion = first["attributes"]["Gender"], first["attributes"]["Emotion"]
    assert gender["n_test"] == 6 * len(held_out) and gender["chance"] == 0.5
    assert gender["probe"] >= 0.9  # voices never heard in fitting
    assert emotion["probe"] <= 0.75  # alternates within a voice: nothing in the sound to find
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "states").rglob("*.safetensors")}
    assert len(cached) == 36  # one file a clip, under training's key (encoder digest, taps, dtype)
    again = run("seeds-again")  # states from the cache (a miss would rewrite its file): the same figures
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "states").rglob("*.safetensors")} == cached


def test_probe_fills_the_cache_training_reads(corpus: Path, embedded_models: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile's probe writes its states where, and under the key, training's recipe opens them: a
    model of the same profile reads every one back (no clip encoded); with the cache off nothing is kept."""
    from components.audio import audio_ref
    from components.config import load_profile
    from components.model import DestaModel, DestaSpec
    from components.model.encoder import AudioStates, EncoderCache, cache_root
    from components.modeldir import backbone_digest

    monkeypatch.setenv("DESTA_CACHE", str(tmp_path / "user-cache"))
    whisper = str(embedded_models["whisper-tiny.en"])
    prof = load_profile()
    prof = prof.model_copy(update={"models": prof.models.model_copy(update={"whisper": whisper})})
    refs = [audio_ref(corpus / "ingest", corpus, r) for r in islice(iter_jsonl(corpus / "ingest" / MANIFEST), 4)]
    spec = ProbeSpec.from_profile(prof)
    assert spec is not None and spec.clips == prof.seeds.probe_clips
    spec.states(corpus)(refs)
    model = DestaModel.from_backbones(DestaSpec.from_profile(prof), precision=prof.train.precision, with_decoder=False)
    root = cache_root(prof.train)  # as launch.prepare decides it; the recipe opens it with the model's dtype
    training = AudioStates(model.encode, corpus, EncoderCache(root, backbone_digest(whisper), prof.model.encoder_layers,
                                                              model.states_dtype))
    training(refs)
    assert training.encoded == 0 and training.cache.hits == len(refs)

    off = prof.model_copy(update={"train": prof.train.model_copy(update={"encoder_cache": False})})
    assert cache_root(off.train) is None and ProbeSpec.from_profile(off).cache_root is None
    noprobe = prof.model_copy(update={"seeds": prof.seeds.model_copy(update={"probe_clips": 0})})
    assert ProbeSpec.from_profile(noprobe) is None
