"""Corpora this project generates from Debian packages (espeak speech, FluidSynth music): written once
into the user cache under a key of everything that decides their bytes, then read from there."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.atomic import atomic_dir

METADATA = "metadata.jsonl"


def deb_version(pkg: str) -> str:
    """An installed Debian package's version, or 'not-installed'."""
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return res.stdout.strip() or "not-installed"


def generated_set(cache: Path, name: str, identity: Any, write: Callable[[Path], list[dict[str, Any]]]) -> Path:
    """`cache/<name>-<key>` (key: sha256 of `identity`, e.g. tool versions, settings and plan): made by
    `write(dir)`, which writes the clips and returns their metadata rows, in a temp dir renamed into place
    with its metadata.jsonl; an existing complete set is returned as it is."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    target = cache / f"{name}-{key}"
    if (target / METADATA).is_file():
        return target
    with atomic_dir(target) as tmp:
        rows = write(tmp)
        (tmp / METADATA).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return target
