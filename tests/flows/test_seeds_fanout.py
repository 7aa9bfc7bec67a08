"""The seeds stage's Whisper chunks as Prefect tasks on real local clusters (Dask, Ray), with the real
embedded Whisper: the shards and the report are byte-identical to `desta seeds` in one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import apply_overrides, load_params
from components.ingest.decode import Limits
from components.ingest.directory import prepare_directory
from components.ingest.run import ingest
from components.seeds.run import CHUNK_BATCHES, seeds_for_profile, whisper_chunks
from flows.seeds import run_seeds
from tests.conftest import REPO
from tests.flows.fanout import kill_busy_ray_workers, settings

pytestmark = pytest.mark.integration

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
PROMPTS = ("activated", "added", "agent-alreadyon", "agent-incorrect", "agent-loggedoff", "agent-loginok",
           "agent-newlocation", "agent-pass", "agent-user", "auth-incorrect", "auth-thankyou", "calling")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedded_models: dict[str, Path]) -> dict[str, Path]:
    """12 speech prompts with no transcript (Whisper hears every one) + a sound, ingested; params with one clip
    per Whisper batch (8 clips a chunk: 2 chunks); the seeds of one process as the reference."""
    root = tmp_path_factory.mktemp("seedfan")
    raw = root / "raw"
    raw.mkdir()
    for name in PROMPTS:
        shutil.copy(ASTERISK / f"{name}.wav", raw / f"{name}.wav")
    shutil.copy("/usr/share/sounds/freedesktop/stereo/complete.oga", raw / "complete.oga")
    (raw / "metadata.jsonl").write_text(json.dumps({"file": "complete.oga", "kind": "sound", "category": "complete"}) + "\n")
    ingest(prepare_directory(raw), root / "ingest", Limits(0.1, 30.0, -60.0), 1 << 26, workers=2, show_progress=False)
    params = root / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(params, ["profile=tiny", f"tiny.data.root={root}", f"tiny.models.whisper={embedded_models['whisper-tiny.en']}",
                             "tiny.seeds.whisper_batch_size=1"])
    prof = load_params(params).active
    seeds_for_profile(prof, root / "ingest", root / "reference", show_progress=False)
    return {"root": root, "params": params}


def assert_same_seeds(a: Path, b: Path) -> None:
    x, y = sorted((a / "shards").glob("*.jsonl")), sorted((b / "shards").glob("*.jsonl"))
    assert [p.name for p in x] == [p.name for p in y] and x
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(x, y))
    assert (a / "report.json").read_bytes() == (b / "report.json").read_bytes()


def test_chunks_are_whole_batches_in_length_order() -> None:
    lengths = [5, 3, 9, 1, 7, 3, 2, 8, 6, 4]
    chunks = whisper_chunks(lengths, 1)
    flat = [i for c in chunks for i in c]
    assert flat == sorted(range(10), key=lambda i: lengths[i])  # one pass's order (ties by position)
    assert [len(c) for c in chunks] == [CHUNK_BATCHES, 10 - CHUNK_BATCHES]
    assert all(len(c) % 3 == 0 for c in whisper_chunks(lengths * 3, 3)[:-1])  # cut at batch boundaries


def test_desta_seeds_on_a_local_dask_cluster_equals_one_process(corpus: dict[str, Path], prefect_harness: None) -> None:
    """`desta seeds` (the DVC stage's command) in its own process with DESTA_TASK_RUNNER=dask: a LocalCluster
    of two worker processes runs the Whisper chunks; the same bytes as the one-process run."""
    from prefect.settings import PREFECT_API_URL

    root = corpus["root"]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DESTA_TASK_RUNNER": "dask",
           "DESTA_TASK_WORKERS": "2"}
    desta = str(Path(sys.executable).with_name("desta"))
    done = subprocess.run([desta, "seeds", "--in", str(root / "ingest"), "--out", str(root / "dask"), "--params",
                           str(corpus["params"]), "--no-track"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 Whisper chunks of up to 8 clips" in done.stdout + done.stderr
    assert_same_seeds(root / "dask", root / "reference")


def test_seeds_on_a_local_ray_head_survive_killed_workers(corpus: dict[str, Path], prefect_harness: None) -> None:
    """A local Ray head (two CPUs); every Ray worker running a chunk is SIGKILLed once: Ray runs the lost
    chunks again on new workers and the seeds are byte-identical to the one-process run."""
    root = corpus["root"]
    killed: list[int] = []
    killer = kill_busy_ray_workers(killed, every=0.05)
    run_seeds(root / "ingest", root / "ray", corpus["params"], settings=settings(task_runner="ray"))
    killer.join(5)
    assert killed, "no Ray worker was seen running a chunk"
    assert_same_seeds(root / "ray", root / "reference")
