"""Issue 6 benchmarks: DeSTA training on the tiny profile, 2 CPU ranks, one run per ZeRO mode
(ZeRO-0 = DDP-like, ZeRO-2, ZeRO-3, ZeRO-2 + CPU offload) with samples/s and peak RSS per rank;
the encoder-state cache against recomputing the encoder; and the paper profile's memory on paper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config import load_params
from components.train.memory import format_table, memory_table
from tests.components.model.realdata import build_corpus, write_rows
from tests.components.train.test_train import cli, history, make_params, run_cli

pytestmark = pytest.mark.bench
MODES = {"zero0": "ZeRO-0 (DDP-like)", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "zero2_offload": "ZeRO-2 + CPU offload"}
STEPS = 15


def _run(repo: Path, work: Path, root: Path, rows: Path, cache: Path, template: str, **train) -> dict:
    params = make_params(repo, work, root, max_steps=STEPS, epochs=10, batch_size=8, checkpoint_every=STEPS,
                         warmup_steps=5, deepspeed_config=str(repo / "infra/deepspeed" / f"{template}.json"), **train)
    res = run_cli(cli(params, rows, work / "out", cache, "--no-track"), work)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((work / "out" / "metrics.json").read_text())
    h = history(work / "out")
    steady = h[1:]
    return {"samples_per_s": round(sum(r["samples_per_s"] for r in steady) / len(steady), 2),
            "steps_per_s": round(len(steady) / sum(r["step_seconds"] for r in steady), 3),
            "peak_rss_mb_per_rank": m["peak_rss_mb_per_rank"], "loss_first": round(m["loss_first"], 3),
            "loss_last": round(m["loss_last"], 3), "launch_wall_s": round(m["wall_seconds_this_launch"], 1),
            "encoder_clips_encoded": m["encoder_clips_encoded_this_launch"]}


def test_zero_modes_on_tiny(tmp_path: Path, repo: Path, embedded_models, record) -> None:
    root = tmp_path / "data"
    rows = write_rows(root / "label" / "rows.jsonl", build_corpus(root, n_speech=40))
    cache = tmp_path / "cache"
    figures = {"rows": len(rows.read_text().splitlines()), "ranks": 2, "batch_per_rank": 8, "steps": STEPS,
               "note": "steady-state means (step 1 excluded); encoder states cached and warm except in no_cache"}
    _run(repo, tmp_path / "warm", root, rows, cache, "zero2")  # fills the encoder cache
    for name, label in MODES.items():
        figures[name] = {"mode": label, **_run(repo, tmp_path / name, root, rows, cache, name)}
    figures["zero2_no_encoder_cache"] = _run(repo, tmp_path / "nocache", root, rows, cache, "zero2", encoder_cache=False)
    figures["encoder_cache_speedup"] = round(figures["zero2"]["samples_per_s"] / figures["zero2_no_encoder_cache"]["samples_per_s"], 2)
    record("train_zero_modes", figures)
    for name in MODES:
        assert figures[name]["loss_last"] < figures[name]["loss_first"]


def test_paper_memory_on_8x80gb(repo: Path, record) -> None:
    table = memory_table(load_params(repo / "params.yaml").profiles["paper"], gpus=8, gpu_gb=80)
    print("\n" + format_table(table))
    record("paper_memory_8x80gb", table)
