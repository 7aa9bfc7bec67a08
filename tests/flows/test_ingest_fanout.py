"""Ingest's decoding as Prefect tasks on real local clusters (Dask, Ray), on real audio with real faults in
it: the shards, manifest, quarantine and stats are byte-identical to `desta ingest` in one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import apply_overrides, load_params
from components.ingest.run import ingest_stage
from flows.ingest import DECODE_CHUNK, run_ingest
from tests.conftest import REPO
from tests.flows.fanout import kill_busy_ray_workers, settings

pytestmark = pytest.mark.integration

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
FILES = 80  # + the faults: three decode tasks


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """80 speech prompts, a copy of one (a duplicate), an empty file, a text file and a clip of a few
    samples; small shards (several per run); the one-process ingest as the reference."""
    root = tmp_path_factory.mktemp("ingestfan")
    raw = root / "raw"
    raw.mkdir()
    for wav in sorted(ASTERISK.glob("*.wav"))[:FILES]:
        shutil.copy(wav, raw / wav.name)
    shutil.copy(raw / "activated.wav", raw / "zz-copy-of-activated.wav")
    (raw / "empty.wav").write_bytes(b"")
    (raw / "notes.txt").write_text("not audio\n")
    (raw / "click.wav").write_bytes((raw / "activated.wav").read_bytes()[:200])  # a torn copy
    params = root / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(params, ["profile=tiny", f"tiny.data.root={root}", f"tiny.ingest.sources=[{raw}]",
                             "tiny.ingest.shard_max_mb=1"])
    prof = load_params(params).active
    report = ingest_stage(prof.ingest, prof.data.sample_rate, root / "reference", show_progress=False)
    assert report.decoded == FILES + 4 and report.accepted == FILES and len(report.quarantined) >= 3, report
    return {"root": root, "params": params}


def outputs(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and p.name != "corpus_card.md"}  # the card is the CLI's, not the driver's
    assert any(k.startswith("shards/shard-") for k in files) and "manifest.jsonl" in files
    return files


def test_desta_ingest_on_a_local_dask_cluster_equals_one_process(corpus: dict[str, Path], prefect_harness: None) -> None:
    """`desta ingest` (the DVC stage's command) in its own process with DESTA_TASK_RUNNER=dask: a LocalCluster
    of two worker processes decodes the clips; the same bytes as one process; a re-run there decodes nothing."""
    from prefect.settings import PREFECT_API_URL

    root, out = corpus["root"], corpus["root"] / "dask"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DESTA_TASK_RUNNER": "dask",
           "DESTA_TASK_WORKERS": "2"}
    cmd = [str(Path(sys.executable).with_name("desta")), "ingest", "--out", str(out), "--params",
           str(corpus["params"]), "--no-track"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    tasks = -(-(FILES + 4) // DECODE_CHUNK)
    assert f"decoding {FILES + 4} files in {tasks} tasks" in done.stdout + done.stderr
    assert outputs(out) == outputs(root / "reference")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"decoded 0, reused {FILES + 4}" in " ".join((again.stdout + again.stderr).split()), again.stderr
    assert outputs(out) == outputs(root / "reference")


def test_ingest_on_a_local_ray_head_survives_killed_workers(corpus: dict[str, Path], prefect_harness: None) -> None:
    """A local Ray head (two CPUs); every Ray worker seen decoding is SIGKILLed once: Ray runs the lost chunks
    again on new workers and the outputs are byte-identical to the one-process run."""
    root = corpus["root"]
    killed: list[int] = []
    killer = kill_busy_ray_workers(killed, every=0.01)
    run_ingest([], root / "ray", params=corpus["params"], settings=settings(task_runner="ray"))
    killer.join(5)
    assert killed, "no Ray worker was seen decoding"
    assert outputs(root / "ray") == outputs(root / "reference")


def test_ingest_on_the_thread_pool_equals_one_process(corpus: dict[str, Path], prefect_harness: None) -> None:
    """The default runner (a thread pool of two) decodes in threads of this process: the same bytes."""
    run_ingest([], corpus["root"] / "threads", params=corpus["params"], settings=settings())
    assert outputs(corpus["root"] / "threads") == outputs(corpus["root"] / "reference")
