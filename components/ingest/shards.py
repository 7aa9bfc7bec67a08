"""Tar shards of FLAC clips: a few large files for DVC, written deterministically and atomically.

A clip's reference is `<shard path relative to the data root>/<id>.flac`, e.g.
`ingest/shards/shard-000003.tar/3f2a….flac`; `components.audio.read_audio_ref` resolves it.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from components.atomic import named
from components.records import clip_member

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
        info = tarfile.TarInfo(clip_member(clip_id))
        info.size = len(flac)
        info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
        try:
            self._tar.addfile(info, io.BytesIO(flac))
        except OSError as err:
            raise named(err, self.dir / f"{self.name}.tmp") from err
        self._size += len(flac) + 512
        return self.name

    def close(self) -> None:
        if self._tar is None:
            return
        tmp = self.dir / f"{self.name}.tmp"
        try:
            self._tar.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        except OSError as err:
            raise named(err, tmp) from err
        os.replace(tmp, self.dir / self.name)
        self.written.append(self.name)
        self._tar = None


    def abort(self) -> None:
        """After a failure (a full disk, a kill signal turned exception): remove the open shard's temp file
        and the shards this writer closed, which no manifest names yet, so a re-run numbers them alike."""
        if self._tar is not None:
            try:
                self._tar.close()
            except OSError:
                pass  # e.g. no space for the tar's end blocks: the file goes anyway
            self._tar = None
        (self.dir / f"{self.name}.tmp").unlink(missing_ok=True)
        for name in self.written:
            (self.dir / name).unlink(missing_ok=True)
        self.written = []


def next_shard_index(out_dir: Path) -> int:
    """First unused shard index: new clips never rewrite a finished shard."""
    existing = sorted((out_dir / SHARD_DIR).glob("shard-*.tar"))
    return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
