"""Where a failed rank leaves its error report for `desta train` (the launcher) to read."""

from __future__ import annotations

import tempfile
from pathlib import Path


def error_dirs(out: Path, fingerprint: str) -> list[Path]:
    """In the order tried: beside the outputs, else (that disk may be the full one) beside the temp files."""
    return [out / "errors", Path(tempfile.gettempdir()) / f"desta-train-errors-{fingerprint}"]
