"""What every source adapter returns: one Candidate per input, accepted or not yet judged."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.atomic import sha256_file as file_sha256  # noqa: F401  (re-exported for adapters)

AUDIO_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus"})
METADATA_FILES = ("metadata.jsonl", "metadata.csv")

# Quarantine reasons (stable strings: reports and tests count them).
UNREADABLE = "unreadable"
EMPTY = "empty"
NOT_AUDIO = "not_audio"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
SILENT = "silent"
DUPLICATE = "duplicate"
OUTSIDE_ROOT = "outside_data_root"
MISSING = "missing"
BAD_ROW = "bad_row"


@dataclass
class Candidate:
    """One input: a file to decode, or a reference already known to be bad (`reject` set)."""

    source: str  # the input path (or reference) exactly as found
    dataset: str
    path: Path | None = None  # resolved file to read; None when rejected before reading
    metadata: dict[str, Any] = field(default_factory=dict)
    reject: str | None = None  # reason, when the adapter already knows it is bad
    detail: str | None = None

    @property
    def key(self) -> str:
        return self.source


def within_root(ref: str, root: Path) -> Path | None:
    """Resolve `ref` under `root`; None if it escapes the root (`../..`, absolute elsewhere, symlinks out)."""
    root = root.resolve()
    candidate = Path(ref)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    return resolved if resolved.is_relative_to(root) else None


def is_hidden(path: Path) -> bool:
    return any(part.startswith(".") for part in path.parts)


def rel_or_abs(path: Path, base: Path) -> str:
    """`path` as a string relative to `base` when below it (stable across clones), else absolute."""
    try:
        return os.path.relpath(path, base) if path.resolve().is_relative_to(base.resolve()) else str(path)
    except ValueError:
        return str(path)
