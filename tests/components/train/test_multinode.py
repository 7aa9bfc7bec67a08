"""Two "nodes" on this machine: two `desta train --nnodes 2 --node-rank K` processes, one rank each,
rendezvousing over 127.0.0.1 (torchrun's multi-node path, gloo over TCP), against one node with two
ranks on the same rows, seed and batch plan: the loss curves and the exported weights are the same."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.components.stack.test_stack import free_ports
from tests.components.train.test_train import cli, corpus, encoder_cache, history, make_params, run_cli  # noqa: F401

pytestmark = pytest.mark.integration
STEPS = 6
ONE_THREAD = {"DESTA_THREADS_PER_RANK": "1"}  # both nodes share 2 cores: one thread per rank, as one node has


@pytest.mark.timeout(900)
def test_two_nodes_train_like_one(repo: Path, corpus, encoder_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    from safetensors.torch import load_file

    root, rows = corpus
    one = make_params(repo, tmp_path / "one", root, max_steps=STEPS, checkpoint_every=STEPS)
    res = run_cli(cli(one, rows, tmp_path / "one" / "out", encoder_cache, "--no-track"), tmp_path / "one")
    assert res.returncode == 0, res.stderr[-3000:]

    two = make_params(repo, tmp_path / "two", root, max_steps=STEPS, checkpoint_every=STEPS, ranks=1)
    out = tmp_path / "two" / "out"
    (port,) = free_ports(1)
    env = {**os.environ, **ONE_THREAD, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    nodes = [subprocess.Popen(cli(two, rows, out, encoder_cache, "--no-track", "--nnodes", "2", "--node-rank", str(k),
                                  "--master-addr", "127.0.0.1", "--master-port", str(port)),
                              cwd=tmp_path / "two", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (1, 0)]  # node 1 first: it waits at the rendezvous for node 0
    try:
        outputs = [p.communicate(timeout=800) for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (o, e) in zip(nodes, outputs):
        assert p.returncode == 0, (o + e)[-3000:]
    assert "on node 0 of 2" in " ".join(outputs[1]).replace("\n", " ")

    a, b = history(tmp_path / "one" / "out"), history(out)
    assert [h["step"] for h in b] == list(range(1, STEPS + 1))
    assert [round(h["loss"], 6) for h in a] == [round(h["loss"], 6) for h in b], ([h["loss"] for h in a], [h["loss"] for h in b])
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (tmp_path / "one" / "out", out))
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() < 1e-6 for k in wa)
    print(f"[multinode] losses one node x2 {[round(h['loss'], 4) for h in a]}; two nodes x1 {[round(h['loss'], 4) for h in b]}")
