"""Tar shards of FLAC clips: a few large files for DVC, written deterministically and atomically.

A clip's reference is `<shard path relative to the data root>/<id>.flac`, e.g.
`ingest/shards/shard-000003.tar/3f2a….flac`; `read_audio_ref` resolves it.
"""

from __future__ import annotations

import io
import os
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

SHARD_DIR = "shards"


class ShardWriter:
    """Append clips to bounded tar shards; a shard becomes visible only when closed (rename)."""

    def __init__(self, out_dir: Path, max_bytes: int, first_index: int = 0) -> None:
        self.dir = out_dir / SHARD_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.index = first_index
        self._tar: tarfile.TarFile | None = None
        self._size = 0
        self.written: list[str] = []  # shard names closed by this writer

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}.tar"

    def add(self, clip_id: str, flac: bytes) -> str:
        """Add one clip; returns the shard file name (relative to the shards dir) holding it."""
        if self._tar is not None and self._size + len(flac) > self.max_bytes:
            self.close()
            self.index += 1
        if self._tar is None:
            self._tar = tarfile.open(self.dir / f"{self.name}.tmp", "w", format=tarfile.USTAR_FORMAT)
            self._size = 0
        info = tarfile.TarInfo(f"{clip_id}.flac")
        info.size = len(flac)
        info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(flac))
        self._size += len(flac) + 512
        return self.name

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        tmp = self.dir / f"{self.name}.tmp"
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / self.name)
        self.written.append(self.name)
        self._tar = None


def next_shard_index(out_dir: Path) -> int:
    """First unused shard index: new clips never rewrite a finished shard."""
    existing = sorted((out_dir / SHARD_DIR).glob("shard-*.tar"))
    return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0


@lru_cache(maxsize=64)
def _index(shard: Path, mtime_ns: int) -> dict[str, tuple[int, int]]:
    with tarfile.open(shard, "r") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}


def read_member(shard: Path, member: str) -> bytes:
    """Bytes of one member, by offset (the shard's index is read once and cached)."""
    offset, size = _index(shard, shard.stat().st_mtime_ns)[member]
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
