"""Shared row types and helpers of the benchmark adapters.

Audio paths in a file are relative to `data_root` (a leading "./" is dropped); a path that
leaves the data root, a missing audio file, a missing or mistyped field is a bad row. Bad rows
raise `BenchmarkFormatError` naming the file and row, or with `on_bad="skip"` are left out and
listed (row number + reason) under `skipped_rows` in the report — never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

OnBad = Literal["error", "skip"]
PREDICTION_KEY = "model_prediction"
DEFAULT_DIFFICULTY = "medium"
DEFAULT_TASK = "speech"


class BenchmarkFormatError(ValueError):
    """A benchmark file or one of its rows cannot be used (the message names file and row)."""


@dataclass(frozen=True)
class BenchItem:
    """One question to ask: the clip, the prompt, and the row as it will be written back."""

    index: int  # position of the row in the benchmark file (0-based)
    audio: str  # the audio path as the file gives it (relative to the data root)
    path: Path  # the resolved audio file
    prompt: str  # user prompt after the audio marker
    row: dict[str, Any]  # the input row with the MMAU results fields filled in
    instructions: tuple[tuple[str, dict[str, Any]], ...] | None = None  # Speech-IFEval checks
    text_prompt: str | None = None  # the text-only reference prompt (Speech-IFEval)


@dataclass
class BenchSet:
    """The usable items of one benchmark file, and the rows left out (with `on_bad="skip"`)."""

    benchmark: str
    source: Path
    data_root: Path
    items: list[BenchItem]
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"row": i, "reason": str}
    total_rows: int = 0


@dataclass(frozen=True)
class Adapter:
    """One benchmark layout: its loader, its part of the scores report, and its answer-length cap."""

    name: str
    load: Callable[..., BenchSet]
    score: Callable[[Sequence[Mapping[str, Any]], str], dict[str, Any]]
    max_new_tokens: int


class _Bad(Exception):
    """A bad row (internal): turned into an error or a skip by the loader."""


def read_rows(path: str | Path) -> tuple[list[Any], bool]:
    """The rows of a benchmark file: a JSON array, a JSON object keyed by audio file (Dynamic-SUPERB
    metadata.json; each value gets `file` = its key), or JSONL. Returns (rows, keyed_by_file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise BenchmarkFormatError(f"{path}: no such file") from e
    except UnicodeDecodeError as e:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text ({e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchmarkFormatError(f"{path}: line {n} is not valid JSON ({e})") from None
        return rows, False
    if isinstance(data, list):
        return data, False
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return [{"file": k, **v} for k, v in data.items()], True
    if isinstance(data, dict):  # a single JSONL row
        return [data], False
    raise BenchmarkFormatError(f"{path}: expected a JSON array of rows, an object keyed by file, or JSONL; "
                               f"got {type(data).__name__}")


def resolve_audio(data_root: Path, ref: Any) -> Path:
    """The audio file `ref` names under `data_root`; raises _Bad when absent or outside the root."""
    if not isinstance(ref, str) or not ref.strip():
        raise _Bad(f"audio path must be a non-empty string, got {ref!r}")
    root = data_root.resolve()
    rel = ref[2:] if ref.startswith("./") else ref
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise _Bad(f"audio path {ref!r} escapes the data root {data_root}")
    if not path.is_file():
        raise _Bad(f"audio file {ref!r} not found under the data root {data_root}")
    return path


def _require(row: Mapping[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    """`row[key]`, present and of type `kind`; raises _Bad otherwise."""
    if key not in row or row[key] is None:
        raise _Bad(f"missing {key!r}")
    if not isinstance(row[key], kind):
        raise _Bad(f"{key!r} must be {getattr(kind, '__name__', kind)}, got {type(row[key]).__name__}")
    return row[key]


def _str_list(row: Mapping[str, Any], key: str) -> list[str]:
    """`row[key]` as a non-empty list of strings; raises _Bad otherwise."""
    value = _require(row, key, list)
    if not value or not all(isinstance(c, str) for c in value):
        raise _Bad(f"{key!r} must be a non-empty list of strings")
    return value


def _row_name(i: int, row: Any) -> str:
    """How error messages name a row: its number, and its id when it has one."""
    rid = row.get("id") if isinstance(row, dict) else None
    return f"row {i}" + (f" (id {rid!r})" if rid is not None else "")


def _load(benchmark: str, path: str | Path, data_root: str | Path, on_bad: OnBad, limit: int | None,
          parse: Callable[[int, dict[str, Any], Path, bool], BenchItem]) -> BenchSet:
    """Read `path` and turn each row into a BenchItem with `parse`; bad rows raise or are skipped."""
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    path, data_root = Path(path), Path(data_root)
    if not data_root.is_dir():
        raise BenchmarkFormatError(f"data root {data_root} is not a directory")
    rows, keyed = read_rows(path)
    if limit is not None:
        rows = rows[:limit]
    out = BenchSet(benchmark, path, data_root, [], total_rows=len(rows))
    for i, row in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise _Bad(f"expected a JSON object, got {type(row).__name__}")
            out.items.append(parse(i, row, data_root, keyed))
        except _Bad as e:
            if on_bad == "error":
                raise BenchmarkFormatError(f"{path}: {_row_name(i, row)}: {e}") from None
            out.skipped.append({"row": i, "id": row.get("id") if isinstance(row, dict) else None, "reason": str(e)})
    if not out.items:
        raise BenchmarkFormatError(f"{path}: no usable rows ({len(out.skipped)} skipped of {len(rows)})")
    return out


def _pct(hits: int, n: int) -> float:
    """hits / n as a percentage rounded to 2 places (0.0 when n is 0)."""
    return round(100.0 * hits / n, 2) if n else 0.0
