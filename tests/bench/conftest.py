"""Benchmarks: record figures as JSON under bench/results/, each a ratio against a baseline
measured in the same run. Run by `make bench`, never by CI."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict[str, object]:
    """The CPU a figure was measured on: lscpu's model name, core count and the flags that change speed."""
    import subprocess

    info = dict(line.split(":", 1) for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if ":" in line)
    flags = set(info.get("Flags", "").split())
    return {"model": info["Model name"].strip(), "cpus": int(info["CPU(s)"]), **{f: f in flags for f in CPU_FLAGS}}


def module_at(repo: Path, commit: str, path: str, where: Path):
    """A module as it was at `commit` (the baseline "today's implementation" a bench compares against),
    loaded under its own name from a copy in `where`; it imports today's other modules."""
    import importlib.util
    import subprocess
    import sys

    src = where / f"{Path(path).stem}_at_{commit}.py"
    src.write_text(subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"],
                                  capture_output=True, text=True, check=True).stdout)
    spec = importlib.util.spec_from_file_location(src.stem, src)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def train_history(repo: Path, work: Path, root: Path, rows: Path, cache: Path, steps: int, **train) -> list[dict]:
    """`desta train --no-track` on `rows` for `steps` steps (2 CPU ranks, 8 rows each, the encoder cache
    in `cache`), with the `train` overrides; its history rows."""
    from tests.components.train.test_train import cli, history, make_params, run_cli

    params = make_params(repo, work, root, max_steps=steps, epochs=20, batch_size=8, checkpoint_every=steps,
                         warmup_steps=5, max_length=160, **train)
    res = run_cli(cli(params, rows, work / "out", cache, "--no-track"), work)
    assert res.returncode == 0, res.stderr[-3000:]
    return history(work / "out")


def results_dir() -> Path:
    """Where this CPU's figures go: bench/results/ on a CPU with native bf16, bench/results/avx2/ on one
    without (every stage runs fp32 there: `components.precision`), so neither class overwrites the other."""
    from components.precision import cpu_has_bf16

    return RESULTS if cpu_has_bf16() else RESULTS / "avx2"


@pytest.fixture()
def record():
    def write(name: str, figures: dict) -> None:
        out = results_dir()
        out.mkdir(parents=True, exist_ok=True)
        doc = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}, **figures}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\n[bench] {name}: {json.dumps(figures)}")

    return write
