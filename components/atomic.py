"""File helpers: write-then-rename (nothing half-written is read as complete), content digests."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# Errors that mean "this disk will not take the write": reported as one line naming the file, not a traceback.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside `target`; on success it replaces `target` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; the final dir should be readable like any other
    old = tmp.with_name(tmp.name.removesuffix(".tmp") + ".old.tmp")
    try:
        yield tmp
        if not target.exists():
            os.rename(tmp, target)
            return
        os.rename(target, old)  # moved aside, not deleted first: the old contents stay whole until the swap
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(old, target)
            raise
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def out_of_space(path: Path, below: int = 16 << 20) -> OSError | None:
    """ENOSPC naming `path` when its filesystem has under `below` bytes free: for writers that lose the
    errno (torch.save's zip writer says only "unexpected pos")."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) if free < below else None


def clear_temps(directory: Path) -> None:
    """Remove the temp files and dirs these helpers left in `directory` when a writer was killed (SIGKILL
    gives no chance to clean up); call it where one writer holds the directory."""
    for p in directory.glob(".*.tmp") if directory.is_dir() else ():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def named(err: OSError, path: Path | str) -> OSError:
    """`err` naming the file it was about (a failed write() says only "No space left on device")."""
    return err if err.filename else type(err)(err.errno, err.strerror, str(path))


@contextmanager
def atomic_open(path: Path) -> Iterator[TextIO]:
    """A text file written line by line that replaces `path` in one rename when the block ends without an
    error (after an fsync); on an error the temp file goes and `path` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise named(err, path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file and rename."""
    with atomic_open(path) as f:
        f.write(text)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
