"""The CTranslate2 Whisper engine against the HF one, on real speech (recorded prompts, espeak clips)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.audio import load_audio
from components.config import SeedsConfig, load_params
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.embedded import EspeakSettings, build_espeak_corpus, default_cache
from components.ingest.run import ingest
from components.seeds.run import build_seeds
from components.model.transcribe import CT2Transcriber, Transcriber, ct2_dir, make_transcriber
from components.text import wer
from tests.components.seeds.test_seeds_run import ASTERISK, KNOWN, UNLABELLED

SPOKEN = {**KNOWN, UNLABELLED[0]: UNLABELLED[1]}
ESPEAK = 4  # clips of the embedded espeak corpus (synthetic voices: tiny.en gets some words wrong)


@pytest.fixture(scope="module")
def whisper(embedded_models: dict[str, Path]) -> Path:
    return embedded_models["whisper-tiny.en"]


@pytest.fixture(scope="module")
def speech() -> tuple[list[np.ndarray], list[str]]:
    """Real recorded prompts with their transcripts, then a few espeak clips with theirs."""
    clips = [load_audio(ASTERISK / f"{name}.wav").numpy() for name in SPOKEN]
    corpus = build_espeak_corpus(EspeakSettings(espeak_clips=300), default_cache())
    rows = [json.loads(x) for x in (corpus / "metadata.jsonl").read_text().splitlines()][:ESPEAK]
    clips += [load_audio(corpus / r["file"]).numpy() for r in rows]
    return clips, [*SPOKEN.values(), *(r["transcript"] for r in rows)]


@pytest.fixture(scope="module")
def hf_fp32(whisper: Path) -> Transcriber:
    return Transcriber(whisper, batch_size=8, bf16=False)


@pytest.fixture(scope="module")
def hf_fp32_text(hf_fp32: Transcriber, speech: tuple[list[np.ndarray], list[str]]) -> list[str]:
    return hf_fp32(speech[0])


def test_ct2_float32_gives_hf_fp32_text(whisper: Path, speech, hf_fp32_text: list[str]) -> None:
    """Same weights, same features, same prompt and suppression: the same greedy text, clip for clip."""
    ct2 = CT2Transcriber(whisper, batch_size=3, compute_type="float32")  # 3: batches of mixed lengths
    assert ct2.engine == "ct2/float32"
    assert ct2(speech[0]) == hf_fp32_text
    assert wer(speech[1][: len(SPOKEN)], hf_fp32_text[: len(SPOKEN)]) < 0.1  # and that text is right


def test_default_ct2_engine_transcribes_like_hf(whisper: Path, speech, hf_fp32_text: list[str]) -> None:
    """The profile's engine: near-perfect on recorded speech, no worse than hf fp32 on espeak beyond one
    word per clip (float32 gives hf fp32's text; the bound also holds for int8, which changes a word or two)."""
    clips, truth = speech
    batches: list[int] = []
    ct2 = make_transcriber("ct2", whisper, batch_size=4)
    assert ct2.engine == "ct2/float32"
    text = ct2(clips, on_batch=batches.append)
    assert batches == [4, 4] and len(text) == len(clips)
    n = len(SPOKEN)
    assert wer(truth[:n], text[:n]) < 0.1, text[:n]
    words = sum(len(t.split()) for t in truth[n:])
    assert wer(truth[n:], text[n:]) <= wer(truth[n:], hf_fp32_text[n:]) + ESPEAK / words, text[n:]


def test_silence_and_empty_input_as_hf(whisper: Path, hf_fp32: Transcriber) -> None:
    """No clips: no call. Silent or empty clips: whatever Whisper says, the same in both engines."""
    ct2 = CT2Transcriber(whisper)
    assert ct2([]) == []
    quiet = [np.zeros(16000, np.float32), np.zeros(0, np.float32)]
    assert ct2(quiet) == hf_fp32(quiet)


def test_max_new_tokens_caps_the_text(whisper: Path) -> None:
    """The cap HF's max_new_tokens sets holds in CT2 too (CT2 counts max_length differently)."""
    clip = load_audio(ASTERISK / "vm-intro.wav").numpy()  # 17 tokens
    ct2 = CT2Transcriber(whisper, compute_type="float32", max_new_tokens=5)
    assert len(ct2.tokenizer(ct2([clip])[0], add_special_tokens=False).input_ids) == 5


def test_missing_ct2_copy_is_a_clear_error(tmp_path: Path, whisper: Path) -> None:
    assert ct2_dir("models/whisper-tiny.en") == Path("models/whisper-tiny.en-ct2")
    hf_only = tmp_path / "whisper-tiny.en"
    shutil.copytree(whisper, hf_only)
    with pytest.raises(FileNotFoundError, match="run `make setup`"):
        make_transcriber("ct2", hf_only)
    with pytest.raises(FileNotFoundError, match="whisper-large-v3-ct2"):  # a hub name has no copy
        make_transcriber("ct2", "openai/whisper-large-v3")
    with pytest.raises(ValueError, match="unknown whisper engine"):
        make_transcriber("vllm", whisper)


def test_profiles_pick_their_engine(repo: Path) -> None:
    profiles = load_params(repo / "params.yaml").profiles
    assert profiles["tiny"].seeds.engine == "ct2"
    assert profiles["paper"].seeds.engine == "hf"  # a hub model: no CTranslate2 copy
    assert SeedsConfig().engine == "hf"  # params without the key keep today's engine


def test_seeds_stage_with_ct2_records_the_engine(tmp_path: Path, whisper: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in KNOWN:
        shutil.copy(ASTERISK / f"{name}.wav", raw / f"{name}.wav")
    (raw / "metadata.jsonl").write_text("".join(
        json.dumps({"file": f"{name}.wav", "transcript": text}) + "\n" for name, text in KNOWN.items()))
    ingest(prepare_directory(raw), tmp_path / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=1,
           show_progress=False)
    report = build_seeds(tmp_path / "ingest", tmp_path, tmp_path / "seeds", whisper,
                         SeedsConfig(engine="ct2", whisper_batch_size=4), show_progress=False)
    assert report["whisper_engine"] == "ct2/float32"
    assert report["whisper_wer_on_known_transcripts"]["raw"]["n"] == 3
    assert report["whisper_wer_on_known_transcripts"]["raw"]["wer"] < 0.2


def test_whisper_generate_logs_nothing_per_call_but_other_warnings_stay(hf_fp32: Transcriber, speech, caplog) -> None:
    """transformers' Whisper generate logs three messages on every call whatever its inputs; they are
    dropped around the call, and a warning from anywhere else still shows."""
    import logging

    with caplog.at_level(logging.WARNING):
        hf_fp32(speech[0][:2])
        hf_fp32(speech[0][:2])
        logging.getLogger("transformers.generation.utils").warning("Both `max_new_tokens` from elsewhere")
    assert [r.getMessage() for r in caplog.records] == ["Both `max_new_tokens` from elsewhere"]


def test_one_encoder_pass_feeds_the_connector_and_either_decoder(repo: Path, whisper: Path, speech,
                                                                  hf_fp32_text: list[str]) -> None:
    """DestaModel.hear (evaluation): the tapped states are `encode`'s, bit for bit, and the transcripts
    decoded from that same pass are the HF engine's (model's own decoder) and the CTranslate2 engine's
    (its decoder on the HF encoder's output), clip for clip, in fp32."""
    from components.measure import heard_speech
    from components.model import DestaModel, DestaSpec

    clips = speech[0]
    model = DestaModel.from_backbones(DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"]),
                                      precision="fp32")
    states, texts = model.hear(clips, batch_size=3)
    assert states.equal(model.encode(clips, batch_size=3))
    assert texts == heard_speech(hf_fp32_text, clips)
    ct2 = CT2Transcriber(whisper, compute_type="float32")
    assert model.hear(clips, batch_size=3, decode=ct2.decode_states)[1] == heard_speech(ct2(clips), clips)
    # bf16 (on CPUs that have it): the fp32 engine gets the features, its text does not move
    bf16 = DestaModel(model.spec, model.whisper, model.llm, model.tokenizer, model.processor, precision="bf16")
    assert bf16.hear(clips, batch_size=3, decode=ct2.decode_states)[1] == heard_speech(ct2(clips), clips)
