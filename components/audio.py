"""Audio I/O: decode any libsndfile format to mono float32, and read clips by their reference.

A clip's reference is `<shard path relative to the data root>/<id>.flac`, e.g.
`ingest/shards/shard-000003.tar/3f2a….flac` (the tar shards `desta ingest` writes); every stage
and the model read clips through `read_audio_ref`.
"""

from __future__ import annotations

import io
import os
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from components.records import DamagedFile, clip_member, rewrite


def load_audio(path: Path, sample_rate: int = 16000) -> torch.Tensor:
    """Decode `path` (wav/flac/ogg/mp3, any bit depth or channel count) to mono float32 at `sample_rate`."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        wav = AF.resample(wav, sr, sample_rate)
    return wav


def audio_ref(manifest_dir: Path, data_root: Path, row: dict[str, Any]) -> str:
    """The reference of an ingest manifest row's clip, relative to the data root: `<shard path>/<member>`."""
    shard = (manifest_dir / row["shard"]).resolve()
    root = data_root.resolve()
    if not shard.is_relative_to(root):
        raise ValueError(f"ingest output {manifest_dir} is not under the data root {data_root}")
    return f"{os.path.relpath(shard, root)}/{clip_member(row['id'])}"


@lru_cache(maxsize=64)
def shard_members(shard: Path, mtime_ns: int) -> dict[str, tuple[int, int]]:
    """Member name -> (data offset, size) of a tar shard; cached per (path, mtime)."""
    try:
        with tarfile.open(shard, "r") as tar:
            return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
    except tarfile.TarError as err:
        raise DamagedFile(f"{shard}: unreadable shard ({err})", rewrite("`desta ingest`")) from None


def read_member(shard: Path, member: str) -> bytes:
    """Bytes of one member, by offset (the shard's index is read once and cached)."""
    offset, size = shard_members(shard, shard.stat().st_mtime_ns)[member]
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


def split_ref(data_root: Path, ref: str) -> tuple[Path, str]:
    """`…/shard-000001.tar/<id>.flac` -> (shard path, member name)."""
    shard, _, member = ref.rpartition("/")
    if not shard.endswith(".tar"):
        raise ValueError(f"not a shard reference: {ref!r}")
    return data_root / shard, member


def read_audio_ref(data_root: Path, ref: str) -> tuple[np.ndarray, int]:
    """Decode the clip a reference names: (float32 mono samples, sample rate)."""
    shard, member = split_ref(data_root, ref)
    data, sr = sf.read(io.BytesIO(read_member(shard, member)), dtype="float32")
    return data, sr
