"""`desta train`: check the data, write the job, start the ranks, report.

One node: torchrun (`components/train/torchrun.py`) `--standalone --nproc_per_node <train.ranks> -m components.train.worker`
(CPU ranks talk over gloo, GPU ranks over NCCL). Several nodes, either: one `desta train --nnodes N
--node-rank K --master-addr HOST --master-port P` per node (what a Slurm/batch script starts; torchrun's
multi-node rendezvous, `train.ranks` ranks on each node, the output dir on a shared filesystem; node 0
prepares the run and rank 0 writes the outputs), or the DeepSpeed launcher with `train.hostfile` (it
starts every node itself over ssh). Users never write the launcher lines; `launch` builds and runs them.

Resuming: a run is identified by a fingerprint of everything that shapes it (backbones, model,
training params, DeepSpeed template, the rows' bytes). Re-running with the same fingerprint resumes
from the newest checkpoint (optimizer, scheduler and data position included) and continues the same
MLflow run; a different fingerprint (or --fresh) starts over and drops the old checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from components.atomic import DISK_ERRORS, atomic_write_text
from components.config import Profile
from components.train import data as D
from components.train import dsconfig
from components.train.reports import error_dirs

# Train knobs that do not change what is learned (a change keeps resuming the same run).
_BOOKKEEPING = {"checkpoint_every", "keep_checkpoints", "log_every", "hostfile", "encoder_cache"}


class TrainError(RuntimeError):
    """Training could not run or stopped; the message says why."""


@dataclass(frozen=True)
class Nodes:
    """Where this `desta train` sits in a multi-node run (torchrun's static rendezvous on node 0's address)."""

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None  # None: torchrun binds a free one itself (one node only)

    def __post_init__(self) -> None:
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise TrainError(f"--node-rank {self.node_rank} must be in 0..{self.nnodes - 1} (--nnodes {self.nnodes})")
        if self.nnodes > 1 and not self.master_port:
            raise TrainError("several nodes need --master-port (the same on every node) and --master-addr (node 0's)")

    @property
    def primary(self) -> bool:
        return self.node_rank == 0


@dataclass
class TrainResult:
    out: Path
    model_dir: Path
    metrics: dict[str, Any]
    resumed_from: int = 0
    skipped: bool = False  # already trained with the same fingerprint


def hostfile_slots(path: Path) -> int:
    """Total slots of a DeepSpeed hostfile (`host slots=N` per line)."""
    total = 0
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            parts = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
            total += int(parts.get("slots", 1))
    if not total:
        raise TrainError(f"hostfile {path} names no hosts")
    return total


def world_size(prof: Profile, nodes: Nodes = Nodes()) -> int:
    return hostfile_slots(Path(prof.train.hostfile)) if prof.train.hostfile else prof.train.ranks * nodes.nnodes


def fingerprint(prof: Profile, rows_sha256: str, ds_config: dict[str, Any]) -> str:
    train = {k: v for k, v in prof.train.model_dump(mode="json").items() if k not in _BOOKKEEPING}
    doc = {"models": prof.models.model_dump(mode="json"), "model": prof.model.model_dump(mode="json"),
           "train": train, "data_root": prof.data.root, "rows": rows_sha256, "deepspeed": ds_config}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def command(job_path: Path, prof: Profile, nodes: Nodes = Nodes()) -> list[str]:
    """The launcher line for this job (torchrun on this node, the DeepSpeed launcher with a hostfile)."""
    worker = ["components.train.worker", "--job", str(job_path)]
    if prof.train.hostfile:  # the rendezvous is on the first host: DeepSpeed's own port there (29500)
        launcher = Path(sys.executable).with_name("deepspeed")
        return [str(launcher), "--hostfile", prof.train.hostfile, "--module", *worker]
    ranks = ["--nproc_per_node", str(prof.train.ranks)]
    if nodes.nnodes == 1 and not nodes.master_port:
        # torchrun's c10d store binds port 0 itself: no port picked here and taken by another job before use
        return [sys.executable, "-m", "components.train.torchrun", "--standalone", "--local-addr", "127.0.0.1", *ranks,
                "-m", *worker]
    return [sys.executable, "-m", "components.train.torchrun", "--nnodes", str(nodes.nnodes),
            "--node_rank", str(nodes.node_rank), *ranks,
            "--master_addr", nodes.master_addr, "--master_port", str(nodes.master_port), "-m", *worker]


def _check_device(prof: Profile) -> None:
    t = prof.train
    if t.device == "cpu" and t.precision == "fp16":
        raise TrainError("train.precision fp16 needs CUDA (DeepSpeed's fp16 loss scaling); use bf16 or fp32 on CPU")
    if t.device == "cuda" and not t.hostfile:
        import torch

        if not torch.cuda.is_available():
            raise TrainError("train.device is cuda but no GPU is visible here (use the tiny profile on CPU)")
        if torch.cuda.device_count() < t.ranks:
            raise TrainError(f"train.ranks {t.ranks} but {torch.cuda.device_count()} GPUs are visible")


def prepare(prof: Profile, profile_name: str, rows_path: Path, out: Path, *, track: bool = True,
            fresh: bool = False, encoder_cache: Path | None = None, nodes: Nodes = Nodes()) -> dict[str, Any]:
    """Validate data and settings, decide fresh vs resume, write OUT/job.json; returns the job. Another
    node than 0 only writes its own job file (the same job): node 0 alone touches checkpoints and run.json."""
    _check_device(prof)
    files = D.row_files(rows_path)
    D.check_audio(D.iter_rows(files), Path(prof.data.root))
    template = Path(prof.train.deepspeed_config)
    ds = dsconfig.build(template, prof.train, world_size(prof, nodes))
    rows_sha = D.rows_digest(files)
    fp = fingerprint(prof, rows_sha, ds)

    ckpt = out / "checkpoints"
    run_file = ckpt / "run.json"  # {fingerprint, mlflow_run_id (rank 0 adds it), registered_version}
    if nodes.primary:
        state = json.loads(run_file.read_text()) if run_file.is_file() else {}
        if fresh or state.get("fingerprint") != fp:
            shutil.rmtree(ckpt, ignore_errors=True)
            (out / "history.jsonl").unlink(missing_ok=True)
            state = {"fingerprint": fp}
        for errors in error_dirs(out, fp):  # reports of an earlier launch
            shutil.rmtree(errors, ignore_errors=True)
        ckpt.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_file, json.dumps(state, indent=2) + "\n")

    from components.model.encoder import cache_root
    from components.modeldir import backbone_digest

    encoder_cache = cache_root(prof.train, encoder_cache)
    whisper_digest = backbone_digest(prof.models.whisper) if encoder_cache else None
    job = {
        "profile_name": profile_name, "profile": prof.model_dump(mode="json"), "device": prof.train.device,
        "row_files": [str(f.resolve()) for f in files], "rows_sha256": rows_sha, "out": str(out.resolve()),
        "deepspeed_template": str(template), "deepspeed": ds, "fingerprint": fp, "track": track,
        "encoder_cache": str(encoder_cache) if encoder_cache else None, "whisper_digest": whisper_digest,
    }
    (out / job_name(nodes)).write_text(json.dumps(job, indent=2) + "\n")
    if nodes.primary:
        (out / "deepspeed_config.json").write_text(json.dumps(ds, indent=2) + "\n")
    return job


def job_name(nodes: Nodes) -> str:
    return "job.json" if nodes.primary else f"job.node{nodes.node_rank}.json"


def threads_per_rank(ranks_here: int) -> int:
    """CPU threads per rank: $DESTA_THREADS_PER_RANK (nodes sharing one machine), else the cores split."""
    raw = os.environ.get("DESTA_THREADS_PER_RANK")
    return int(raw) if raw else max(1, (os.cpu_count() or 1) // max(1, ranks_here))


def launch(job: dict[str, Any], prof: Profile, nodes: Nodes = Nodes()) -> int:
    """Start this node's ranks and wait; returns the launcher's exit code."""
    out = Path(job["out"])
    env = dict(os.environ)
    if job["device"] == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
        env["OMP_NUM_THREADS"] = str(threads_per_rank(prof.train.ranks))
    env.setdefault("LOGLEVEL", "ERROR")  # torchrun's own warnings (e.g. "Sending process ... SIGTERM") are noise
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    cmd = command(out / job_name(nodes), prof, nodes)
    return subprocess.run(cmd, env=env, preexec_fn=_die_with_parent).returncode


def _die_with_parent() -> None:
    """In the launcher child: SIGKILL it when `desta train` dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:  # not Linux: the ranks' own parent watch still stops them
        pass


def _failure(out: Path, code: int, fingerprint: str) -> TrainError:
    found = [p for d in error_dirs(out, fingerprint) for p in sorted(d.glob("rank*.json"))]
    reports = [json.loads(p.read_text()) | {"at": str(p.parent)} for p in found]
    if not reports:
        return TrainError(f"training exited with code {code} and no rank reported why (killed?); "
                          f"re-run `desta train` to resume from the last checkpoint")
    first = min(reports, key=lambda r: (r["code"] == 1, r["rank"]))  # NaN/data errors explain best
    if first.get("errno") in DISK_ERRORS:
        return TrainError(f"rank {first['rank']}: {first['message']}: free space there (or point --out / data.root "
                          f"at another disk) and re-run `desta train` (it resumes from the last checkpoint)")
    where = [ln.strip() for ln in first.get("traceback", "").splitlines() if ln.strip().startswith("File ")][-1:]
    detail = first["message"] or (f"at {where[0]}" if where else "")  # e.g. a bare assert inside a library
    return TrainError(f"rank {first['rank']}: {first['type']}: {detail} (full report: {first['at']})")


def train(prof: Profile, profile_name: str, rows_path: Path, out: Path, *, track: bool = True,
          fresh: bool = False, encoder_cache: Path | None = None, nodes: Nodes = Nodes()) -> TrainResult:
    """Run (or resume) training to completion; raises TrainError with the reason on failure."""
    out.mkdir(parents=True, exist_ok=True)
    name = ".train.lock" if nodes.primary else f".train.node{nodes.node_rank}.lock"
    lock = FileLock(str(out / name), timeout=0)  # one `desta train` per output dir (and node)
    try:
        lock.acquire()
    except Timeout:
        raise TrainError(f"another `desta train` is running on {out} (lock {out / name})") from None
    try:
        return _train_locked(prof, profile_name, rows_path, out, track=track, fresh=fresh, encoder_cache=encoder_cache,
                             nodes=nodes)
    finally:
        lock.release()


def _train_locked(prof: Profile, profile_name: str, rows_path: Path, out: Path, *, track: bool,
                  fresh: bool, encoder_cache: Path | None, nodes: Nodes) -> TrainResult:
    try:
        job = prepare(prof, profile_name, rows_path, out, track=track, fresh=fresh, encoder_cache=encoder_cache,
                      nodes=nodes)
    except (D.TrainDataError, FileNotFoundError) as err:
        raise TrainError(str(err)) from None
    model_cfg = out / "model" / "config.json"
    if not fresh and model_cfg.is_file() and json.loads(model_cfg.read_text()).get("train", {}).get("fingerprint") == job["fingerprint"]:
        return TrainResult(out, out / "model", json.loads((out / "metrics.json").read_text()), skipped=True)
    code = launch(job, prof, nodes)
    if code != 0:
        raise _failure(out, code, job["fingerprint"])
    metrics = json.loads((out / "metrics.json").read_text())
    return TrainResult(out, out / "model", metrics, resumed_from=int(metrics.get("resumed_from_step", 0)))
