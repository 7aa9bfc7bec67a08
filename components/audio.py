"""Audio I/O: decode any libsndfile format to mono float32 at a target rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


def load_audio(path: Path, sample_rate: int = 16000) -> torch.Tensor:
    """Decode `path` (wav/flac/ogg/mp3, any bit depth or channel count) to mono float32 at `sample_rate`."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        wav = AF.resample(wav, sr, sample_rate)
    return wav
