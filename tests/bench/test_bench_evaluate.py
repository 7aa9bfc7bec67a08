"""Evaluation wall time: today's implementation (components/evaluate/run.py as of BASELINE, read from
git) against the current one, on the same model, clips and questions, in bf16 and fp32; with how many
predictions, forced choices and metrics come out equal (fp32: bit for bit; bf16: within its rounding)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from components.config import load_params
from components.evaluate.run import PREDICTIONS, evaluate_model
from components.model import DestaModel, DestaSpec
from components.precision import cpu_has_bf16
from tests.bench.conftest import cpu, module_at
from tests.bench.test_bench_label import HostLoad
from tests.components.evaluate.test_evaluate_run import heldout_seeds

pytestmark = pytest.mark.bench
BASELINE = "1a6b404"  # main before the one-context-pass evaluation
BATCH_TODAY = 16  # tiny's evaluate.batch_size at BASELINE
KEYS = ("model_prediction", "prior_prediction", "forced_choice", "prior_forced_choice", "heard")


def _baseline(repo: Path, where: Path):
    return module_at(repo, BASELINE, "components/evaluate/run.py", where).evaluate_model


@pytest.mark.timeout(5400)
def test_evaluate_speed_and_equality(tmp_path: Path, repo: Path, embedded_models, record) -> None:
    root = tmp_path / "data"
    seeds = heldout_seeds(root, n_speech=24)
    today = _baseline(repo, tmp_path)
    profile = load_params(repo / "params.yaml").profiles["tiny"]
    figures: dict = {"cpu": cpu(), "baseline_commit": BASELINE, "clips": len(seeds),
                     "batch_size": {"today": BATCH_TODAY, "now": profile.evaluate.batch_size}}
    load = HostLoad()
    # Without native bf16 a bf16 model runs fp32 (components.precision): that run would repeat fp32's.
    for precision in ("bf16", "fp32") if cpu_has_bf16() else ("fp32",):
        torch.manual_seed(0)
        model = DestaModel.from_backbones(DestaSpec.from_profile(profile), precision=precision)
        runs = {}
        for name, fn, batch in (("today", today, BATCH_TODAY), ("now", evaluate_model, profile.evaluate.batch_size)):
            out = tmp_path / f"{precision}-{name}"
            t0 = time.perf_counter()
            metrics = fn(model, [dict(s) for s in seeds], root, out, None, batch, show_progress=False)
            runs[name] = (time.perf_counter() - t0, metrics, [json.loads(x) for x in (out / PREDICTIONS).read_text().splitlines()])
        (t_a, m_a, p_a), (t_b, m_b, p_b) = runs["today"], runs["now"]
        figures[precision] = {
            "questions": len(p_a), "seconds_today": round(t_a, 1), "seconds_now": round(t_b, 1),
            "speedup": round(t_a / t_b, 2),
            "identical": {k: sum(a[k] == b[k] for a, b in zip(p_a, p_b)) for k in KEYS},
            "metrics_today": {k: v for k, v in m_a.items() if not isinstance(v, dict)},
            "metrics_now": {k: v for k, v in m_b.items() if not isinstance(v, dict)},
        }
    figures["others_load"] = load.others()
    record("evaluate_speed", figures)
    fp32 = figures["fp32"]
    assert all(n == fp32["questions"] for n in fp32["identical"].values()), fp32  # fp32: the same work, bit for bit
    assert fp32["metrics_today"] == fp32["metrics_now"]
    assert fp32["speedup"] > 1.5 and figures.get("bf16", fp32)["speedup"] > 1.5
