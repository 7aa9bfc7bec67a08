"""`kill -9` a real `desta label` process mid-run, re-run it: the same rows as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from components.config import ModelsConfig
from components.label.run import label
from tests.components.label.helpers import cached_responses, label_cfg, seed_file, seed_rows, shard_bytes, write_jsonl

N_SEEDS = 16  # 2 shards of 8 rows, 2 batches of 4 each per attempt


def _shards(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("label-*.jsonl")) if (out / "shards").is_dir() else []


def _start(repo: Path, seeds: Path, out: Path, params: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "components.label.cli", "--seeds", str(seeds), "--out", str(out),
           "--params", str(params), "--no-track", "--no-progress"]
    return subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress to kill at"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_mid_run_then_resume(tmp_path: Path, repo: Path, llm_dir: Path, models: ModelsConfig,
                                    hf_backend) -> None:
    seeds = seed_rows(N_SEEDS)
    seeds_file = write_jsonl(tmp_path / "seeds.jsonl", seeds)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["tiny"]["models"]["llm"] = str(llm_dir)
    raw["tiny"]["label"] = label_cfg().model_dump(mode="json")  # the same settings as the reference run
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "killed"

    # Kill 1: right after the first batch is committed (mid-shard). Kill 2: after a shard landed.
    _kill_when(_start(repo, seeds_file, out, params), lambda: cached_responses(out) >= 1)
    first = cached_responses(out)
    assert not _shards(out)  # killed inside the first unit
    _kill_when(_start(repo, seeds_file, out, params), lambda: len(_shards(out)) >= 1)
    assert cached_responses(out) > first and not (out / "shards" / "provenance.json").exists()  # killed before the end

    done = _start(repo, seeds_file, out, params)
    stdout, stderr = done.communicate(timeout=900)
    assert done.returncode == 0, stderr

    # The reference: one uninterrupted run (in-process, same model and settings, its own cache).
    label(seed_file(tmp_path, seeds), tmp_path / "clean", label_cfg(), models, backend=hf_backend, show_progress=False)
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]  # no temp files left
    ids = [json.loads(line)["id"] for p in _shards(out) for line in p.read_text().splitlines()]
    assert len(ids) == len(set(ids))
