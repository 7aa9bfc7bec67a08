"""The frozen Whisper encoder, tapped at configurable layers, and an on-disk cache of its output.

Tap index k is the k-th entry of the encoder's hidden states: 0 = conv + position embeddings,
k = output of encoder layer k, all before the final LayerNorm (as the official DeSTA code taps them).
Whisper always sees a 30 s window (3000 mel frames -> 1500 positions), like the paper.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from components.audio import read_audio_ref
from components.modeldir import user_cache

POSITIONS = 1500  # encoder positions in Whisper's 30 s window
SAMPLES_PER_POSITION = 320  # 160-sample mel hop x conv stride 2 at 16 kHz


def tapped_states(encoder: nn.Module, features: torch.Tensor, layers: Sequence[int],
                  final: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(N, mel, 3000) log-mel features -> (N, len(layers), 1500, d); runs only as deep as needed, or with
    `final` through every layer, also returning the encoder's output (N, 1500, d) that its decoder reads."""
    n_layers = len(encoder.layers)
    if max(layers) > n_layers:
        raise ValueError(f"encoder layer {max(layers)} requested; the encoder has {n_layers} layers (max index {n_layers})")
    expected = encoder.config.max_source_positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if features.shape[-1] != expected:
        raise ValueError(f"Whisper needs {expected} mel frames (30 s), got {features.shape[-1]}")
    h = nn.functional.gelu(encoder.conv1(features.to(encoder.conv1.weight.dtype)))
    h = nn.functional.gelu(encoder.conv2(h)).permute(0, 2, 1)
    h = h + encoder.embed_positions.weight[: h.shape[1]]
    taps = {0: h} if 0 in layers else {}
    for k, layer in enumerate(encoder.layers[: n_layers if final else max(layers)], start=1):
        h = layer(h, None)
        if isinstance(h, tuple):
            h = h[0]
        if k in layers:
            taps[k] = h
    states = torch.stack([taps[k] for k in layers], dim=1)
    return (states, encoder.layer_norm(h)) if final else states


def states_dtype(precision: str) -> torch.dtype:
    """The dtype of the tapped states the connector reads and the cache keeps (part of the cache key)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def log_mel(feature_extractor, wavs: Sequence[np.ndarray]) -> torch.Tensor:
    """16 kHz clips -> Whisper log-mel features padded to 30 s."""
    return feature_extractor(list(wavs), sampling_rate=16000, return_tensors="pt").input_features


@torch.no_grad()
def encode_states(feature_extractor, encoder: nn.Module, layers: Sequence[int], wavs: Sequence[np.ndarray],
                  bf16: bool, batch_size: int = 8) -> torch.Tensor:
    """16 kHz clips -> tapped states (N, L, 1500, d): under bf16 autocast and stored bf16 when `bf16`, else fp32
    (the dtype the connector reads and the cache keeps)."""
    device = encoder.conv1.weight.device
    out = []
    for i in range(0, len(wavs), batch_size):
        feats = log_mel(feature_extractor, wavs[i : i + batch_size]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(tapped_states(encoder, feats, layers).to(torch.bfloat16 if bf16 else torch.float32))
    return torch.cat(out)


class TappedEncoder:
    """Whisper's encoder alone at the connector's taps: for a stage that needs the states the model reads
    without loading the LLM (the seeds' learnability probe). `precision` as resolved for the device."""

    def __init__(self, whisper: str, layers: Sequence[int], precision: str) -> None:
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.encoder = WhisperModel.from_pretrained(whisper, dtype=torch.float32).get_encoder().eval()
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(whisper)
        self.layers, self.bf16 = list(layers), precision == "bf16"
        self.states_dtype = states_dtype(precision)

    def __call__(self, wavs: Sequence[np.ndarray]) -> torch.Tensor:
        return encode_states(self.feature_extractor, self.encoder, self.layers, wavs, self.bf16)


def valid_frames(wavs: Sequence[np.ndarray]) -> torch.Tensor:
    """Encoder positions that hold each 16 kHz clip (50 per second, 320 samples each; 1..1500)."""
    return torch.tensor([min(POSITIONS, max(1, math.ceil(len(w) / SAMPLES_PER_POSITION))) for w in wavs])


def audio_key(wav: np.ndarray) -> str:
    """Content address of a clip: sha256 of its float32 samples."""
    return hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()[:32]


class EncoderCache:
    """Tapped states per clip as safetensors files, under a directory keyed by the encoder's
    weights digest, the tapped layers and the dtype: a changed encoder never reads stale states.
    Writes are atomic (temp + rename), so several ranks can fill it at once."""

    def __init__(self, root: Path, encoder_digest: str, layers: Sequence[int], dtype: torch.dtype) -> None:
        tag = f"{encoder_digest[:16]}-L{'_'.join(map(str, layers))}-{str(dtype).removeprefix('torch.')}"
        self.dir = Path(root) / tag
        self.dtype = dtype
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        from safetensors.torch import load_file

        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            states = load_file(str(path))["states"]
        except Exception:  # noqa: BLE001 -- a torn or foreign file is a miss, rewritten below
            self.misses += 1
            return None
        self.hits += 1
        return states

    def put(self, key: str, states: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"states": states.detach().to(self.dtype).contiguous()}, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def cache_root(train: Any, root: Path | None = None) -> Path | None:
    """The encoder-state cache training reads (`root`, else beside the prepared models:
    $DESTA_CACHE/encoder-states, default ~/.cache/desta), None when `train.encoder_cache` is off. The one
    place that decides it, for training and for the seeds' probe that fills it."""
    return Path(root or user_cache("encoder-states")) if train.encoder_cache else None


class AudioStates:
    """Tapped encoder states for a micro-batch's clips: from the cache, else the encoder (then cached)."""

    def __init__(self, encode, data_root: Path, cache: EncoderCache | None) -> None:
        self.encode, self.data_root, self.cache = encode, data_root, cache
        self.encoded = 0

    def __call__(self, refs: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (N, L, 1500, d), real encoder positions per clip (N,))."""
        wavs = [read_audio_ref(self.data_root, r)[0] for r in refs]
        keys = [audio_key(w) for w in wavs]
        states: list[torch.Tensor | None] = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, s in enumerate(states) if s is None]
        if todo:
            fresh = self.encode([wavs[i] for i in todo])
            self.encoded += len(todo)
            for i, s in zip(todo, fresh):
                states[i] = s
                if self.cache:
                    self.cache.put(keys[i], s)
        return torch.stack(states), valid_frames(wavs)  # type: ignore[arg-type]
