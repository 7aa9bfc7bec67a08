"""Scale by simulation (tests/bench/scale.py): every metadata path at 10^4, 10^5 and 10^6 DeSTA-AQA5M-shaped
rows, each path in its own process (seconds, peak MB above its start), and the growth exponent of each
(the slope of log time over log rows). The paths changed for scale also run as of their BASELINES, where they
finish in time, with their outputs compared. Sizes: DESTA_SCALE_SIZES (comma-separated)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import scale
from tests.bench.conftest import cpu

pytestmark = pytest.mark.bench
SIZES = [int(n) for n in os.environ.get("DESTA_SCALE_SIZES", "10000,100000,1000000").split(",")]
BEFORE_UP_TO = {"evaluate questions": 100_000, "train data plan + tokenise": 100_000}  # hours at 10^6 (quadratic)


def _run(cmd: str, path: str, root: Path) -> dict:
    res = subprocess.run([sys.executable, "-m", "tests.bench.scale", cmd, path, str(root)], cwd=scale.REPO,
                         capture_output=True, text=True, timeout=4 * 3600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def exponent(sizes: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) over log(size): 1 = linear, 2 = quadratic."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts), 2)


@pytest.mark.timeout(6 * 3600)  # ~30 min on 2 cores at the default sizes
def test_scale_simulation(tmp_path: Path, record) -> None:
    table: dict[str, dict[str, dict]] = {name: {} for name in scale.PATHS}
    before: dict[str, dict[str, dict]] = {name: {} for name in scale.BEFORE}
    for n in SIZES:
        root = tmp_path / f"n{n}"
        subprocess.run([sys.executable, "-m", "tests.bench.scale", "prepare", str(n), str(root)], cwd=scale.REPO,
                       check=True, timeout=4 * 3600)
        for name in scale.PATHS:
            table[name][str(n)] = _run("run", name, root)
            print(f"[scale] {n} {name}: {table[name][str(n)]}", flush=True)
        for name in (name for name in scale.BEFORE if n <= BEFORE_UP_TO.get(name, 100_000_000)):
            before[name][str(n)] = got = _run("before", name, root)
            assert {k: v for k, v in got.items() if k not in ("seconds", "peak_mb")} == \
                {k: v for k, v in table[name][str(n)].items() if k not in ("seconds", "peak_mb")}, name
            print(f"[scale] {n} {name} (as of {scale.BASELINES[name]}): {got}", flush=True)
        shutil.rmtree(root)  # 10^6 rows take ~3 GB

    def exponents(rows: dict[str, dict]) -> dict[str, float | None]:
        sizes = [int(n) for n in rows]
        return {"seconds": exponent(sizes, [r["seconds"] for r in rows.values()]),
                "peak_mb": exponent(sizes, [max(r["peak_mb"], 0.1) for r in rows.values()])}

    figures = {
        "cpu": cpu(), "sizes": SIZES, "baseline_commits": scale.BASELINES,
        "paths": {name: {"by_rows": rows, "exponent": exponents(rows)} for name, rows in table.items()},
        "before": {name: {"by_rows": rows, "exponent": exponents(rows)} for name, rows in before.items()},
    }
    record("scale", figures)
    for name, fig in figures["paths"].items():  # nothing grows faster than linearly (with noise)
        assert fig["exponent"]["seconds"] is None or fig["exponent"]["seconds"] < 1.3, (name, fig)
