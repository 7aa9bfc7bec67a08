"""Adapter: a directory of audio files with optional metadata.csv / metadata.jsonl beside them."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.ingest.candidates import METADATA_FILES, OUTSIDE_ROOT, Candidate, is_hidden, within_root
from components.records import jsonl_rows

FILE_KEYS = ("file", "file_name", "path", "audio")


def _metadata_rows(meta_file: Path) -> list[dict[str, Any]]:
    if meta_file.suffix == ".jsonl":
        return jsonl_rows(meta_file)
    with meta_file.open(newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def load_metadata(folder: Path) -> tuple[dict[Path, dict[str, Any]], list[Candidate]]:
    """Per-file metadata of every metadata file under `folder`, keyed by resolved path.

    Rows naming a file outside `folder` come back as rejected candidates, never read.
    """
    meta: dict[Path, dict[str, Any]] = {}
    rejected: list[Candidate] = []
    for name in METADATA_FILES:
        for meta_file in sorted(folder.rglob(name)):
            for row in _metadata_rows(meta_file):
                key = next((k for k in FILE_KEYS if k in row), None)
                if key is None:
                    raise ValueError(f"{meta_file}: a row has none of the file columns {FILE_KEYS}: {row}")
                ref = str(row.pop(key))
                target = within_root(ref, meta_file.parent) if not Path(ref).is_absolute() else None
                if target is None or not target.is_relative_to(folder.resolve()):
                    rejected.append(Candidate(ref, folder.name, reject=OUTSIDE_ROOT, detail=f"listed in {meta_file}"))
                    continue
                meta[target] = row
    return meta, rejected


def prepare_directory(folder: Path, dataset: str | None = None) -> list[Candidate]:
    """One candidate per file under `folder` (sorted, hidden files and metadata files skipped)."""
    return list(iter_directory(folder, dataset))


def iter_directory(folder: Path, dataset: str | None = None) -> Iterator[Candidate]:
    """`prepare_directory` one candidate at a time (the sorted file list and the metadata are held)."""
    if not folder.is_dir():
        raise NotADirectoryError(f"source is not a directory: {folder}")
    meta, rejected = load_metadata(folder)
    name = dataset or folder.resolve().name
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        if path.name in METADATA_FILES or is_hidden(path.relative_to(folder)):
            continue
        resolved = within_root(str(path.relative_to(folder)), folder)
        if resolved is None:  # a symlink pointing out of the source directory
            yield Candidate(str(path), name, reject=OUTSIDE_ROOT, detail="symlink leaves the source")
            continue
        row = dict(meta.get(resolved, {}))
        yield Candidate(str(path), str(row.pop("dataset", name)), path=resolved, metadata=row)
    yield from rejected
