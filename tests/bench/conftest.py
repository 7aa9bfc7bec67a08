"""Benchmarks: record figures as JSON under bench/results/, each a ratio against a baseline
measured in the same run. Run by `make bench`, never by CI."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@pytest.fixture()
def record():
    def write(name: str, figures: dict) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}, **figures}
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\n[bench] {name}: {json.dumps(figures)}")

    return write
