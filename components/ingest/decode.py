"""Decode, check and convert one clip to 16 kHz mono; runs in worker processes."""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from components.ingest import candidates as c


@dataclass(frozen=True)
class Limits:
    min_duration: float
    max_duration: float
    silence_dbfs: float
    sample_rate: int = 16000


@dataclass
class Decoded:
    """A clip that passed every check: its content id and FLAC bytes at the target rate."""

    id: str
    duration: float
    flac: bytes
    original_sample_rate: int
    original_channels: int


@dataclass
class Rejected:
    reason: str
    detail: str


def _read(path: Path) -> tuple[np.ndarray, int]:
    """All frames as float32 (frames, channels); soundfile handles 8/16/24/32-bit and float."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, sr


def decode_clip(path: Path, limits: Limits) -> Decoded | Rejected:
    """Check one file and convert it; every failure is a Rejected with a reason, never an exception."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return Rejected(c.MISSING, str(err))
    if size == 0:
        return Rejected(c.EMPTY, "zero-byte file")
    try:
        info = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 -- libsndfile raises bare RuntimeErrors/LibsndfileError
        reason = c.UNREADABLE if path.suffix.lower() in c.AUDIO_EXTS else c.NOT_AUDIO
        return Rejected(reason, f"{type(err).__name__}: {err}".strip()[:300])
    try:
        data, sr = _read(path)
    except Exception as err:  # noqa: BLE001
        return Rejected(c.UNREADABLE, f"decode failed: {err}"[:300])
    if data.shape[0] == 0:
        return Rejected(c.EMPTY, "no audio frames")
    if not np.isfinite(data).all():
        return Rejected(c.UNREADABLE, "non-finite samples")
    duration = data.shape[0] / sr
    if duration < limits.min_duration:
        return Rejected(c.TOO_SHORT, f"{duration:.3f}s < {limits.min_duration}s")
    if duration > limits.max_duration:
        return Rejected(c.TOO_LONG, f"{duration:.3f}s > {limits.max_duration}s")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != limits.sample_rate:
        wav = AF.resample(wav, sr, limits.sample_rate)
    peak = float(wav.abs().max())
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < limits.silence_dbfs:
        return Rejected(c.SILENT, f"peak {peak_db:.1f} dBFS < {limits.silence_dbfs} dBFS")
    pcm = (wav.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy()
    # The id hashes the stored 16 kHz PCM: the same sound in two files or formats is one clip.
    clip_id = hashlib.sha256(pcm.tobytes()).hexdigest()[:20]
    buf = io.BytesIO()
    sf.write(buf, pcm, limits.sample_rate, format="FLAC", subtype="PCM_16")
    return Decoded(
        id=clip_id,
        duration=round(len(pcm) / limits.sample_rate, 4),
        flac=buf.getvalue(),
        original_sample_rate=sr,
        original_channels=info.channels,
    )
