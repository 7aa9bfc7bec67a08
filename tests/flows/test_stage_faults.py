"""Real faults under the stages, on the micro corpus, against an uninterrupted run of each.

- A full disk under every stage after ingest (ingest's own: tests/components/ingest/test_faults.py): the
  output dir on a real tmpfs (a private mount namespace: `unshare`) of half the pages the uninterrupted
  output takes. One error line naming the disk and what to do, never a traceback; no temp file; nothing
  that reads as a finished stage; after the filesystem grows, the re-run equals the uninterrupted run.
- SIGKILL of ingest, seeds and evaluate halfway through (label and train resume from their cache and
  checkpoints: tests/components/label/test_resume_kill.py, tests/components/train/test_train.py): nothing
  that reads as finished; the re-run leaves no temp file and equals the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from components.config import apply_overrides
from tests.conftest import REPO
from tests.flows.workspace import BIN, env_for, micro_corpus, micro_overrides

PAGE = 4096
# What each stage reads (relative to the chain's data root) and the files whose presence says "finished".
INPUTS = {
    "seeds": ["--in", "ingest"],
    "label": ["--seeds", "seeds"],
    "train": ["--in", "label"],
    "evaluate": ["--model", "train/model", "--seeds", "seeds"],
}
FINISHED = {"ingest": "stats.json", "seeds": "report.json", "label": "stats.json", "train": "metrics.json",
            "evaluate": "metrics.json"}
TIMINGS = ("seconds", "wall", "per_s", "rss", "_at")  # keys of measured time/memory: differ run to run
WORK = ("generated", "cache_hits", "tokens", "backend_stats", "backend_loads", "processes")  # label's work: a re-run does less, elsewhere


def _stage(stage: str, root: Path, params: Path, out: Path, cache: Path) -> list[str]:
    """The stage's command line: its inputs from the chain's data root, its outputs into `out`."""
    args = [str(BIN / "desta"), stage, "--params", str(params), "--no-track", "--out", str(out)]
    pairs = INPUTS.get(stage, [])
    args += [p if p.startswith("--") else str(root / p) for p in pairs]
    if stage == "train":
        args += ["--encoder-cache", str(cache)]
    if stage in ("label", "evaluate"):
        args += ["--no-progress"]
    return args


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every stage run once, uninterrupted, on the micro corpus: the inputs and the reference outputs."""
    tmp = tmp_path_factory.mktemp("disk-full")
    root, cache = tmp / "data", tmp / "encoder-cache"
    params = tmp / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    corpus = micro_corpus(tmp / "corpus", per_voice=2)  # 20 clips: every stage still has rows to pass on
    apply_overrides(params, [*micro_overrides(corpus), f"tiny.data.root={root}", "tiny.evaluate.max_questions=4"])
    env = env_for(REPO, COLUMNS="400")
    env.pop("DESTA_PROFILE", None)
    seconds = {}
    for stage in ["ingest", *INPUTS]:
        t0 = time.perf_counter()
        res = _run(_stage(stage, root, params, root / stage, cache), env)
        seconds[stage] = time.perf_counter() - t0
        assert res.returncode == 0, f"{stage}: {res.stderr[-3000:]}"
    return {"root": root, "params": params, "cache": cache, "env": env, "tmp": tmp, "seconds": seconds}


def _pages(d: Path) -> int:
    return sum(-(-p.stat().st_size // PAGE) or 1 for p in d.rglob("*") if p.is_file()) + sum(1 for p in d.rglob("*") if p.is_dir())


def _steady(value: Any) -> Any:
    """A stats/metrics document without its timings (what must equal between runs)."""
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if not any(t in k for t in TIMINGS + WORK)}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


def _outputs(out: Path, stage: str) -> dict[str, Any]:
    """What an uninterrupted run and a re-run must share: every output file's bytes (json without timings;
    train's working state, checkpoints and reports, left out)."""
    got: dict[str, Any] = {}
    for p in sorted(out.rglob("*")):
        rel = str(p.relative_to(out))
        if not p.is_file() or rel.split("/")[0] in ("checkpoints", "errors", "cache") or rel.endswith(".lock"):
            continue
        if stage == "train" and rel.startswith("job"):
            continue  # the launch's own job file: names its output dir
        if stage == "train" and rel in ("history.jsonl", "model/model.safetensors"):
            continue  # compared below to 6 decimals (two ranks' all-reduce order)
        got[rel] = _steady(json.loads(p.read_text())) if p.suffix == ".json" else p.read_bytes()
    return got


@pytest.mark.parametrize("stage", list(INPUTS))
def test_full_disk_is_one_line_leaves_nothing_half_written_and_a_rerun_matches(stage: str, chain: dict[str, Any]) -> None:
    root, tmp = chain["root"], chain["tmp"] / stage
    out, copy = tmp / "out", tmp / "copy"
    for d in (out, copy):
        d.mkdir(parents=True)
    size = max(2, _pages(root / stage) // 2) * PAGE // 1024
    cmd = " ".join(f'"{a}"' for a in _stage(stage, root, chain["params"], out, chain["cache"]))
    script = f"""
        mount -t tmpfs -o size={size}k tmpfs "{out}" || exit 99
        {cmd} > "{tmp}/full.log" 2>&1; echo $? > "{tmp}/full.rc"
        (cd "{out}" && find . | sort) > "{tmp}/full.files"
        mount -o remount,size=256m "{out}"
        {cmd} > "{tmp}/rerun.log" 2>&1; echo $? > "{tmp}/rerun.rc"
        cp -a "{out}/." "{copy}/"
    """
    res = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], env=chain["env"],
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr
    log = (tmp / "full.log").read_text()
    assert (tmp / "full.rc").read_text().strip() == "1", log[-3000:]
    assert "Traceback" not in log and log.count("error:") == 1, log[-3000:]
    assert "No space left on device" in log and str(out) in log and "re-run" in log, log[-3000:]
    left = (tmp / "full.files").read_text().split()
    assert not [f for f in left if f.endswith(".tmp") or "/.tmp" in f], left  # no temp file of any writer
    assert f"./{FINISHED[stage]}" not in left, left  # nothing that reads as a finished stage

    assert (tmp / "rerun.rc").read_text().strip() == "0", (tmp / "rerun.log").read_text()[-3000:]
    want, got = _outputs(root / stage, stage), _outputs(copy, stage)
    assert got == want
    if stage == "train":
        _same_training(root / stage, copy)
    if stage == "label":  # the re-run generated only what the failed run had not committed to the cache
        clean, rerun = (json.loads((d / "stats.json").read_text()) for d in (root / stage, copy))
        assert rerun["cache_hits"] + rerun["generated"] == clean["generated"]
    print(f"[disk-full] {stage}: tmpfs {size} KiB; {left.__len__()} paths left after the failure")


def _same_training(want: Path, got: Path) -> None:
    import torch
    from safetensors.torch import load_file

    losses = [[round(json.loads(x)["loss"], 6) for x in (d / "history.jsonl").read_text().splitlines()] for d in (want, got)]
    assert losses[0] == losses[1]
    a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (want, got))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _killed_after(args: list[str], env: dict[str, str], delay: float, finished: Path) -> bool:
    """Start the stage, SIGKILL it and its workers after `delay` s; False if it had finished by then."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(delay)
        running = proc.poll() is None and not finished.exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing gets to clean up
        except ProcessLookupError:  # the whole group had exited (the poll above reaped its leader): it finished
            pass
        proc.wait()
    return running


@pytest.mark.parametrize("stage", ["ingest", "seeds", "evaluate"])
def test_sigkill_halfway_leaves_nothing_read_as_finished_and_a_rerun_matches(stage: str, chain: dict[str, Any]) -> None:
    root, out = chain["root"], chain["tmp"] / f"kill-{stage}"
    args = _stage(stage, root, chain["params"], out, chain["cache"])
    # Killed at half the reference run's time; a run faster than the reference (the other test worker went
    # idle) is tried again with half the delay, so the kill always lands in a running stage.
    for delay in (chain["seconds"][stage] * f for f in (0.5, 0.25, 0.125)):
        if _killed_after(args, chain["env"], delay, out / FINISHED[stage]):
            break
        shutil.rmtree(out)
    else:
        pytest.fail(f"{stage} always finished before the kill")
    assert not (out / FINISHED[stage]).exists()
    res = _run(args, chain["env"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # the re-run cleared the killed run's temps
    assert _outputs(out, stage) == _outputs(root / stage, stage)


def _garbage_line(d: Path, pattern: str) -> Path:
    """Append a line that is not JSON to the first file matching `pattern` under `d`; returns that file."""
    path = sorted(d.glob(pattern))[0]
    path.write_text(path.read_text() + '{"id": "cut-off\n')
    return path


def _truncate(d: Path, pattern: str) -> Path:
    """Cut the first file matching `pattern` under `d` to half its bytes (a torn copy); returns it."""
    path = sorted(d.glob(pattern))[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


# (stage, what is broken in its input, how): every stage's own input, copied from the reference chain.
BROKEN = [
    ("seeds", "ingest", lambda d: _truncate(d, "shards/shard-*.tar")),
    ("seeds", "ingest", lambda d: _garbage_line(d, "manifest.jsonl")),
    ("label", "seeds", lambda d: _garbage_line(d, "shards/seeds-*.jsonl")),
    ("train", "label", lambda d: _garbage_line(d, "shards/label-*.jsonl")),
    ("evaluate", "train", lambda d: _truncate(d, "model/*.safetensors")),
]


@pytest.mark.parametrize(("stage", "upstream", "damage"), BROKEN,
                         ids=["seeds-torn-shard", "seeds-bad-manifest", "label-bad-seeds", "train-bad-label-shard",
                              "evaluate-torn-model"])
def test_broken_input_is_one_line_naming_the_file_and_nothing_reads_as_finished(
        stage: str, upstream: str, damage: Any, chain: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in {*(p.split("/")[0] for p in INPUTS[stage] if not p.startswith("--")), upstream}:
        shutil.copytree(chain["root"] / name, root / name)
    broken = damage(root / upstream)
    params = tmp_path / "params.yaml"
    params.write_text(chain["params"].read_text())
    apply_overrides(params, [f"tiny.data.root={root}"])
    out = root / f"{stage}-out"
    res = _run(_stage(stage, root, params, out, chain["cache"]), chain["env"])
    log = res.stdout + res.stderr
    assert res.returncode == 1, log[-3000:]
    assert "Traceback" not in log and log.count("error:") == 1, log[-3000:]
    assert broken.name in log, log[-3000:]  # the user is told which file
    assert not (out / FINISHED[stage]).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # (none when `out` was never made)
    print(f"[broken] {stage}: {[line for line in log.splitlines() if 'error:' in line][0][:300]}")
