"""Scale by simulation (tests/bench/scale.py): every metadata path at 10^4, 10^5 and 10^6 DeSTA-AQA5M-shaped
rows, each path in its own process (seconds, peak MB above its start), and the growth exponent of each
(the slope of log time over log rows). The paths changed for scale also run as of their BASELINES, where they
finish in time, with their outputs compared; the paths that now stream the seed rows also run whole as of
STREAM_BASELINE (that commit's own tree, in a git worktree). Sizes: DESTA_SCALE_SIZES (comma-separated); only
some paths: DESTA_SCALE_PATHS (a regular expression over their names; the figures then go to scale-<DESTA_SCALE_TAG>)."""

from __future__ import annotations

import json
import math
import os
import re
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
ONLY = re.compile(os.environ.get("DESTA_SCALE_PATHS", ""))
STREAM_BASELINE = "5e3f998"  # main before split, label and evaluate read the seed rows streaming
STREAMED = ("held-out split", "label, cold cache", "label, warm cache", "evaluate questions")


def _run(cmd: str, path: str, root: Path, tree: Path = scale.REPO) -> dict:
    """`python -m tests.bench.scale` in its own process, on the code of `tree` (`-m` puts it first on the path)."""
    res = subprocess.run([sys.executable, "-m", "tests.bench.scale", cmd, path, str(root)], cwd=tree,
                         capture_output=True, text=True, timeout=4 * 3600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _results(figures: dict) -> dict:
    """What a path computed (its counts and digests), without its time and memory."""
    return {k: v for k, v in figures.items() if k not in ("seconds", "peak_mb")}


def _outputs(root: Path) -> dict[str, bytes]:
    """The label stage's shards (the bytes a reader sees), by name."""
    return {p.name: p.read_bytes() for p in sorted((root / "label" / "shards").glob("*.jsonl"))}


def exponent(sizes: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) over log(size): 1 = linear, 2 = quadratic."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts), 2)


@pytest.mark.timeout(6 * 3600)  # ~30 min on 2 cores at the default sizes
def test_scale_simulation(tmp_path: Path, record) -> None:
    paths = [name for name in scale.PATHS if ONLY.search(name)]
    table: dict[str, dict[str, dict]] = {name: {} for name in paths}
    before: dict[str, dict[str, dict]] = {name: {} for name in scale.BEFORE if name in paths}
    streamed: dict[str, dict[str, dict]] = {name: {} for name in STREAMED if name in paths}
    old_tree = tmp_path / f"tree-{STREAM_BASELINE}"
    if streamed:
        subprocess.run(["git", "-C", str(scale.REPO), "worktree", "add", "--detach", str(old_tree), STREAM_BASELINE],
                       check=True, capture_output=True)
    for n in SIZES:
        root = tmp_path / f"n{n}"
        subprocess.run([sys.executable, "-m", "tests.bench.scale", "prepare", str(n), str(root)], cwd=scale.REPO,
                       check=True, timeout=4 * 3600)
        for name in paths:
            table[name][str(n)] = _run("run", name, root)
            print(f"[scale] {n} {name}: {table[name][str(n)]}", flush=True)
        if streamed:  # the same paths, whole, as of STREAM_BASELINE: the same results, the same label shards
            now = _outputs(root)
            shutil.rmtree(root / "label", ignore_errors=True)
            for name in streamed:
                streamed[name][str(n)] = got = _run("run", name, root, old_tree)
                assert _results(got) == _results(table[name][str(n)]), name
                print(f"[scale] {n} {name} (as of {STREAM_BASELINE}): {got}", flush=True)
            assert _outputs(root) == now
        for name in (name for name in before if n <= BEFORE_UP_TO.get(name, 100_000_000)):
            before[name][str(n)] = got = _run("before", name, root)
            assert _results(got) == _results(table[name][str(n)]), name
            print(f"[scale] {n} {name} (as of {scale.BASELINES[name]}): {got}", flush=True)
        shutil.rmtree(root)  # 10^6 rows take ~3 GB

    def exponents(rows: dict[str, dict]) -> dict[str, float | None]:
        sizes = [int(n) for n in rows]
        return {"seconds": exponent(sizes, [r["seconds"] for r in rows.values()]),
                "peak_mb": exponent(sizes, [max(r["peak_mb"], 0.1) for r in rows.values()])}

    if streamed:
        subprocess.run(["git", "-C", str(scale.REPO), "worktree", "remove", "--force", str(old_tree)], check=True)
    figures = {
        "cpu": cpu(), "sizes": SIZES, "baseline_commits": scale.BASELINES, "stream_baseline": STREAM_BASELINE,
        "paths": {name: {"by_rows": rows, "exponent": exponents(rows)} for name, rows in table.items()},
        "before": {name: {"by_rows": rows, "exponent": exponents(rows)} for name, rows in before.items()},
        "before_streaming": {name: {"by_rows": rows, "exponent": exponents(rows)} for name, rows in streamed.items()},
    }
    record("scale" + (f"-{os.environ.get('DESTA_SCALE_TAG', 'partial')}" if ONLY.pattern else ""), figures)
    for name, fig in figures["paths"].items():  # nothing grows faster than linearly (with noise)
        assert fig["exponent"]["seconds"] is None or fig["exponent"]["seconds"] < 1.3, (name, fig)
