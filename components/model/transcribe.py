"""Batched Whisper transcription of 16 kHz clips: HF transformers (`hf`) or CTranslate2 (`ct2`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from components.precision import resolve as resolve_precision

MAX_NEW_TOKENS = 220  # a 30 s window of fast speech is ~100 tokens; a looping decode stops here
# CTranslate2 compute type of the `ct2` engine: float32 gives the hf fp32 text clip for clip. int8 was ~9 %
# faster on espeak clips but on the held-out clips of a make run its WER was 0.906 against 0.537 (docs/seeds.md)
CT2_COMPUTE_TYPE = "float32"


# What transformers' Whisper `generate` logs on every call whatever its inputs: it passes its own
# suppress-token arguments beside the generation config, the checkpoint's config carries max_length=448
# beside our max_new_tokens, and Whisper's decoder prompt has no attention mask to infer (its pad is eos).
_GENERATE_NOISE = ("Passing `generation_config` together with", "Both `max_new_tokens`",
                   "The attention mask is not set with a batched input")


class _DropGenerateNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_GENERATE_NOISE)


@contextmanager
def quiet_whisper_generate() -> Iterator[None]:
    """Around a Whisper `generate` call: drop those three per-call messages, keep every other warning."""
    log = logging.getLogger("transformers.generation.utils")
    noise = _DropGenerateNoise()
    log.addFilter(noise)
    try:
        yield
    finally:
        log.removeFilter(noise)


class Engine(Protocol):
    engine: str  # "<engine>/<precision that runs>", recorded in the seeds report

    def __call__(self, clips: Sequence[np.ndarray], on_batch: Callable[[int], None] | None = None) -> list[str]: ...


def _by_length(
    clips: Sequence[np.ndarray], batch_size: int, decode: Callable[[list[np.ndarray]], list[str]],
    on_batch: Callable[[int], None] | None,
) -> list[str]:
    """decode() over batches of clips sorted by length (batches decode alike), texts in input order."""
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    out: list[str] = [""] * len(clips)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, text in zip(idx, decode([clips[i] for i in idx])):
            out[i] = text.strip()
        if on_batch:
            on_batch(len(idx))
    return out


class Transcriber:
    """Greedy Whisper decoding in batches with HF transformers (any local dir or hub name)."""

    def __init__(self, model_dir: str | Path, batch_size: int = 16, bf16: bool = True) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(model_dir)
        self.model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
        self.batch_size = batch_size
        # bf16 autocast: ~1.5x faster on AMX CPUs, emulated (far slower) on AVX2-only ones;
        # features stay fp32 (the extractor needs numpy).
        self.bf16 = bf16 and resolve_precision("bf16") == "bf16"

    @property
    def engine(self) -> str:
        return "hf/bf16" if self.bf16 else "hf/fp32"

    def _decode(self, batch: list[np.ndarray]) -> list[str]:
        feats = self.processor(batch, sampling_rate=16000, return_tensors="pt").input_features
        with (torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16),
              quiet_whisper_generate()):
            ids = self.model.generate(feats, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS)
        return self.processor.batch_decode(ids, skip_special_tokens=True)

    def __call__(self, clips: Sequence[np.ndarray], on_batch: Callable[[int], None] | None = None) -> list[str]:
        return _by_length(clips, self.batch_size, self._decode, on_batch)


def ct2_dir(whisper_dir: str | Path) -> Path:
    """The CTranslate2 copy of a local HF Whisper dir: `<dir>-ct2` (linked by `desta setup`)."""
    return Path(f"{str(whisper_dir).rstrip('/')}-ct2")


class CT2Transcriber:
    """Greedy Whisper decoding in batches with CTranslate2; log-mel features and tokenizer from the HF dir,
    so both engines see the same input and text normalisation."""

    def __init__(self, whisper_dir: str | Path, batch_size: int = 16, compute_type: str = CT2_COMPUTE_TYPE,
                 max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        import ctranslate2
        from transformers import AutoTokenizer, WhisperFeatureExtractor

        model = ct2_dir(whisper_dir)
        if not (model / "model.bin").is_file():
            raise FileNotFoundError(
                f"no CTranslate2 Whisper at {model} (seeds engine `ct2`): run `make setup`, which links it "
                f"for the embedded model, or set seeds.engine: hf")
        self.features = WhisperFeatureExtractor.from_pretrained(whisper_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(whisper_dir)
        # English-only model: no language/task tokens; <|notimestamps|> as HF's generate puts it.
        self.prompt = self.tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])
        # One batch at a time on all torch's cores (inter_threads=2, intra=1 measured no faster on 2 cores).
        self.model = ctranslate2.models.Whisper(str(model), device="cpu", compute_type=compute_type,
                                                inter_threads=1, intra_threads=torch.get_num_threads())
        self.batch_size = batch_size
        # CTranslate2 4.8 caps the generated tokens at max_length // 2 (Whisper's 448-token text context
        # holds prompt + text); 2 * max_new_tokens gives HF's max_new_tokens (tests check the cap).
        self.max_length = 2 * max_new_tokens

    @property
    def engine(self) -> str:
        return f"ct2/{self.model.compute_type}"  # the type that runs, e.g. int8 -> int8_float32 on CPU

    def _decode(self, batch: list[np.ndarray]) -> list[str]:
        return self.decode_states(self.features(batch, sampling_rate=16000, return_tensors="np").input_features)

    def decode_states(self, inputs: np.ndarray) -> list[str]:
        """Greedy text of log-mel features (N, mel, 3000), or of the Whisper encoder's output (N, 1500, d)
        computed elsewhere over the same weights (then CTranslate2 runs only its decoder)."""
        import ctranslate2

        feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(inputs, dtype=np.float32))
        # suppress_blank and suppress_tokens=[-1] (defaults) apply the model's suppress lists, as HF does.
        results = self.model.generate(feats, [self.prompt] * len(inputs), beam_size=1, max_length=self.max_length)
        return self.tokenizer.batch_decode([r.sequences_ids[0] for r in results], skip_special_tokens=True)

    def __call__(self, clips: Sequence[np.ndarray], on_batch: Callable[[int], None] | None = None) -> list[str]:
        return _by_length(clips, self.batch_size, self._decode, on_batch)


def make_transcriber(engine: str, whisper_dir: str | Path, batch_size: int = 16) -> Engine:
    """The seeds stage's Whisper: `hf` (transformers, any model) or `ct2` (CTranslate2, `<whisper_dir>-ct2`)."""
    if engine == "hf":
        return Transcriber(whisper_dir, batch_size)
    if engine == "ct2":
        return CT2Transcriber(whisper_dir, batch_size)
    raise ValueError(f"unknown whisper engine {engine!r} (hf | ct2)")
