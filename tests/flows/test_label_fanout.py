"""Label shards as Prefect tasks on a thread pool, with the real embedded LLM: same shards as `desta label`."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from components.config import apply_overrides, load_params
from flows.label import label_shards, make_task_runner
from flows.settings import FlowSettings
from tests.components.label.helpers import cached_responses, seed_file, seed_rows, write_jsonl
from tests.conftest import REPO
from tests.flows.fanout import settings

pytestmark = pytest.mark.integration


def label_params(tmp_path: Path, llm: Path, shard_rows: int = 2, max_new_tokens: int = 8) -> Path:
    """params.yaml for small greedy label units of the real embedded LLM, one instruction per clip."""
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(params, [
        "profile=tiny", f"tiny.models.llm={llm}", f"tiny.label.shard_rows={shard_rows}", "tiny.label.batch_size=2",
        f"tiny.label.max_new_tokens={max_new_tokens}", "tiny.label.threads=1", "tiny.label.max_retries=0",
        "tiny.label.instructions_per_clip=1",
    ])
    return params


def assert_same_shards(a: Path, b: Path, n: int) -> None:
    """The same label shards, byte for byte, under two output dirs."""
    x, y = sorted((a / "shards").glob("label-*.jsonl")), sorted((b / "shards").glob("label-*.jsonl"))
    assert [p.name for p in x] == [p.name for p in y] and len(x) == n
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(x, y))


@pytest.fixture(scope="module")
def threads12(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None,
              embedded_models: dict[str, Path]) -> dict[str, Path]:
    """12 seeds in 2 units (16-token answers) labelled on the thread pool: what the killed clusters must match."""
    tmp = tmp_path_factory.mktemp("threads12")
    params = label_params(tmp, embedded_models["smollm2-135m-instruct"], shard_rows=6, max_new_tokens=16)
    seeds = write_jsonl(tmp / "seeds.jsonl", seed_rows(12))
    label_shards.with_options(task_runner=make_task_runner(settings()))(str(seeds), str(tmp / "threads"), str(params))
    return {"params": params, "seeds": seeds, "out": tmp / "threads"}


def test_runner_choice_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    monkeypatch.setenv("DESTA_TASK_WORKERS", "3")
    runner = make_task_runner()
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    for kind in ("dask", "ray"):  # a deployment without the extra: one error naming the package
        monkeypatch.setitem(sys.modules, f"prefect_{kind}", None)  # `import prefect_<kind>` raises ImportError
        with pytest.raises(RuntimeError, match=f"needs the prefect-{kind} package"):
            make_task_runner(settings(task_runner=kind))
    monkeypatch.setenv("DESTA_TASK_RUNNER", "spark")
    with pytest.raises(ValueError, match="DESTA_TASK_RUNNER"):
        FlowSettings.from_env()


def test_units_fan_out_on_threads_and_match_sequential_label(tmp_path: Path, prefect_harness: None,
                                                             embedded_models: dict[str, Path]) -> None:
    from prefect import get_client

    from components.label.run import label

    params = label_params(tmp_path, embedded_models["smollm2-135m-instruct"])
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(8))
    flow = label_shards.with_options(task_runner=make_task_runner(settings()))
    state = flow(str(seeds), str(tmp_path / "fan"), str(params), return_state=True)
    stats = state.result()
    assert stats["units"] == 4 and stats["rows_written"] - stats["choice_rows"] + stats["quarantined"] == 8
    assert len(stats["processes"]) == 1 and stats["backend_loads"] == 1  # four units, two threads, one model

    # Four task runs, all completed, and at least two of them overlapped in time (two threads).
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert sorted(r.name for r in runs) == [f"label-label-{i:06d}" for i in range(4)]
    assert all(r.state.is_completed() for r in runs)
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans

    # The same shards, byte for byte, as the in-process sequential run of `desta label`.
    prof = load_params(params).active
    label(seed_file(tmp_path, seed_rows(8)), tmp_path / "seq", prof.label, prof.models, show_progress=False)
    assert_same_shards(tmp_path / "fan", tmp_path / "seq", 4)


def test_units_on_a_local_dask_cluster_match_threads(tmp_path: Path, prefect_harness: None,
                                                     embedded_models: dict[str, Path]) -> None:
    """DESTA_TASK_RUNNER=dask with no address: a LocalCluster of two worker processes is started for the
    run, each loads its own model, and the shards are byte-identical to the thread pool's."""
    params = label_params(tmp_path, embedded_models["smollm2-135m-instruct"])
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(8))
    runner = make_task_runner(settings(task_runner="dask"))
    assert type(runner).__name__ == "DaskTaskRunner"
    stats = label_shards.with_options(task_runner=runner)(str(seeds), str(tmp_path / "dask"), str(params))
    assert stats["units"] == 4
    threads = label_shards.with_options(task_runner=make_task_runner(settings()))(str(seeds), str(tmp_path / "threads"),
                                                                                 str(params))
    assert threads["rows_written"] == stats["rows_written"]
    # Each worker process that ran units loaded the model once (the units came to it as separate task copies).
    assert len(stats["processes"]) in (1, 2) and stats["backend_loads"] == len(stats["processes"]), stats
    assert f"{socket.gethostname()}:{os.getpid()}" not in stats["processes"]  # the workers ran them, not this process
    assert_same_shards(tmp_path / "dask", tmp_path / "threads", 4)


def test_dask_workers_killed_mid_run_are_replaced_and_the_shards_still_match(
        tmp_path: Path, threads12: dict[str, Path]) -> None:
    """SIGKILL every Dask worker process once the first responses are cached (units half done): the
    nannies start new workers, the lost units run again (from the response cache), same shards."""
    import signal
    import threading
    import time

    import psutil

    params, seeds = threads12["params"], threads12["seeds"]
    killed: list[int] = []

    def cached_rows() -> int:
        return cached_responses(tmp_path / "dask")

    def kill_workers_when_cached() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if cached_rows() > 0:  # the first batch is committed: the units are half done
                for proc in psutil.Process().children():
                    if any("multiprocessing.spawn" in part for part in proc.cmdline()):  # a Dask worker
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_workers_when_cached, daemon=True)
    killer.start()
    stats = label_shards.with_options(task_runner=make_task_runner(settings(task_runner="dask")))(
        str(seeds), str(tmp_path / "dask"), str(params))
    killer.join(5)
    assert killed, "no Dask worker was running when the first responses were cached"
    assert stats["units"] == 2 and 0 < cached_rows() <= 12
    assert_same_shards(tmp_path / "dask", threads12["out"], 2)
    assert not list((tmp_path / "dask" / "shards").glob("*.tmp*"))  # no half-written shard left


def test_units_on_a_local_ray_head_match_threads_and_survive_killed_workers(
        tmp_path: Path, threads12: dict[str, Path]) -> None:
    """DESTA_TASK_RUNNER=ray with no address: a local Ray head (two CPUs) is started for the run. Every Ray
    worker process is SIGKILLed once the first responses are cached; the lost units run again (Ray retries
    a task whose worker died; the response cache keeps what was committed) and the shards are
    byte-identical to the thread pool's."""
    import signal
    import threading
    import time

    import psutil

    params, seeds = threads12["params"], threads12["seeds"]
    runner = make_task_runner(settings(task_runner="ray"))
    assert type(runner).__name__ == "RayTaskRunner"
    killed: list[int] = []

    def kill_workers_when_cached() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if cached_responses(tmp_path / "ray") > 0:
                for proc in psutil.process_iter(["cmdline"]):
                    title = (proc.info["cmdline"] or [""])[0]  # a Ray worker's process title: ray::IDLE, ray::<task>
                    if title.startswith("ray::") and not title.endswith("Agent"):  # not the node's own agents
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_workers_when_cached, daemon=True)
    killer.start()
    stats = label_shards.with_options(task_runner=runner)(str(seeds), str(tmp_path / "ray"), str(params))
    killer.join(5)
    assert killed, "no Ray worker was running when the first responses were cached"
    assert stats["units"] == 2 and stats["backend_loads"] <= len(stats["processes"])  # at most once per worker
    assert_same_shards(tmp_path / "ray", threads12["out"], 2)
    assert not list((tmp_path / "ray" / "shards").glob("*.tmp*"))



def test_desta_label_fans_out_on_the_configured_runner(tmp_path: Path, threads12: dict[str, Path]) -> None:
    """`desta label`, the command the DVC stage runs, in its own process: with DESTA_TASK_RUNNER=dask its units
    run as Prefect tasks on a LocalCluster started for it (the stats name worker processes, not the CLI's),
    the progress line counts every row, and the shards are byte-identical to the thread pool's; unset, it
    labels in its own process as before; a runner name it does not know is one error line."""
    import json
    import subprocess

    from prefect.settings import PREFECT_API_URL

    params, seeds = threads12["params"], threads12["seeds"]
    base = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "DESTA_TASK_WORKERS": "2"}
    base.pop("DESTA_TASK_RUNNER", None)
    desta = str(Path(sys.executable).with_name("desta"))

    def label(out: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([desta, "label", "--seeds", str(seeds), "--out", str(tmp_path / out), "--params",
                               str(params), "--no-track"], env={**base, **env}, capture_output=True, text=True,
                              timeout=900)

    fan = label("dask", DESTA_TASK_RUNNER="dask")
    assert fan.returncode == 0, fan.stderr[-3000:]
    stats = json.loads((tmp_path / "dask" / "stats.json").read_text())
    assert stats["units"] == 2 and 1 <= len(stats["processes"]) <= 2 and stats["backend_loads"] == len(stats["processes"])
    assert_same_shards(tmp_path / "dask", threads12["out"], 2)
    assert "label 12/12 (100%)" in fan.stdout + fan.stderr

    alone = label("alone")
    assert alone.returncode == 0, alone.stderr[-3000:]
    solo = json.loads((tmp_path / "alone" / "stats.json").read_text())
    assert len(solo["processes"]) == 1 and not set(solo["processes"]) & set(stats["processes"])
    assert_same_shards(tmp_path / "alone", threads12["out"], 2)

    bad = label("bad", DESTA_TASK_RUNNER="spark")
    assert bad.returncode != 0 and "DESTA_TASK_RUNNER must be one of" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
