"""`desta spread` (flows/spread.py): the pipeline's label rows trained once per training seed and evaluated on
the same held-out questions, on the micro corpus with the real stages; the summary's figures are each seed's
own, a re-run trains and evaluates nothing again, and a bad call is one error line."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from components.config import apply_overrides
from flows.spread import summarise
from tests.conftest import REPO
from tests.flows.workspace import BIN, env_for, micro_corpus, micro_overrides


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "desta"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_summary_is_each_seeds_figures_with_mean_and_spread() -> None:
    def metrics(gender: float, said: float) -> dict:
        return {"per_attribute": {
            "forced_choice": {"Gender": gender, "What was said": said},
            "string_match": {"Gender": gender - 10, "What was said": said},
            "prior_forced_choice": {"Gender": 50.0, "What was said": 30.0},
            "chance": {"Gender": 50.0, "What was said": 25.0},
            "majority": {"Gender": 62.07, "What was said": 1.72},
            "questions": {"Gender": 59, "What was said": 58}}}

    got = summarise({2: metrics(90.0, 60.0), 0: metrics(80.0, 40.0), 1: metrics(85.0, 50.0)})
    assert got["seeds"] == [0, 1, 2]
    gender = got["per_attribute"]["Gender"]
    assert gender["forced_choice"] == {"mean": 85.0, "std": 5.0, "min": 80.0, "max": 90.0, "values": [80.0, 85.0, 90.0]}
    assert gender["string_match"]["mean"] == 75.0
    assert (gender["prior_forced_choice"], gender["chance"], gender["questions"]) == (50.0, 50.0, 59)
    assert gender["majority"] == 62.07
    assert got["per_attribute"]["What was said"]["forced_choice"]["std"] == 10.0


def test_spread_trains_each_seed_evaluates_the_same_questions_and_reruns_nothing(tmp_path: Path) -> None:
    root, params = tmp_path / "data", tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    corpus = micro_corpus(tmp_path / "corpus", per_voice=2)
    apply_overrides(params, [*micro_overrides(corpus), f"tiny.data.root={root}", "tiny.evaluate.max_questions=8"])
    env = env_for(REPO, COLUMNS="200", DESTA_CACHE=str(tmp_path / "user-cache"))
    env.pop("DESTA_PROFILE", None)
    for stage in ("ingest", "seeds", "label"):
        res = _run([stage, "--params", str(params), "--no-track"], env)
        assert res.returncode == 0, f"{stage}: {res.stderr[-3000:]}"

    res = _run(["spread", "--params", str(params), "--no-track", "--no-progress", "--seed", "0", "--seed", "1"], env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = root / "spread"
    summary = json.loads((out / "spread.json").read_text())
    runs = {s: json.loads((out / f"seed-{s}" / "evaluate" / "metrics.json").read_text()) for s in (0, 1)}
    assert summary["seeds"] == [0, 1] and summary["per_attribute"]
    for attribute, row in summary["per_attribute"].items():
        values = [runs[s]["per_attribute"]["forced_choice"][attribute] for s in (0, 1)]
        assert row["forced_choice"]["values"] == values
        assert row["forced_choice"]["mean"] == round(statistics.fmean(values), 2)
        assert row["questions"] == runs[0]["per_attribute"]["questions"][attribute]
        assert row["majority"] == runs[0]["per_attribute"]["majority"][attribute]
    # the same questions for every seed; a different seed trained a different connector
    assert runs[0]["questions"] == runs[1]["questions"]
    weights = [(out / f"seed-{s}" / "train" / "model" / "model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]
    prints = [json.loads((out / f"seed-{s}" / "train" / "model" / "config.json").read_text())["train"]["fingerprint"]
              for s in (0, 1)]
    assert prints[0] != prints[1]  # the seed is part of what the run was made from
    assert not (root / "train").exists() and not (root / "evaluate").exists()  # the pipeline's outputs untouched

    made = [p for d in ("train/model", "evaluate") for p in out.glob(f"seed-*/{d}/**/*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in made}  # models and evaluations: nothing rewritten
    again = _run(["spread", "--params", str(params), "--no-track", "--no-progress", "--seed", "0", "--seed", "1"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr  # the console writes to stderr
    assert said.count("trained (already done)") == 2 and said.count("evaluated (already done)") == 2, said
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((out / "spread.json").read_text()) == summary


@pytest.mark.parametrize(("args", "says"), [
    (["--seed", "3"], "at least two different training seeds"),
    (["--seed", "0", "--seed", "1"], "label"),  # no label rows yet
])
def test_a_bad_call_is_one_error_line(tmp_path: Path, args: list[str], says: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    apply_overrides(params, [f"tiny.data.root={tmp_path / 'data'}"])
    env = env_for(REPO, COLUMNS="400", DESTA_CACHE=str(tmp_path / "user-cache"))
    env.pop("DESTA_PROFILE", None)
    res = _run(["spread", "--params", str(params), "--no-track", *args], env)
    assert res.returncode == 1 and "Traceback" not in res.stderr + res.stdout
    assert says in res.stderr + res.stdout
