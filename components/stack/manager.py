"""`up`, `down` and `status` of the local stack: real processes on 127.0.0.1, tracked by pid in a state file.

Everything the stack stores lives in its data dir and survives `down`/`up`, a reboot or a killed process:
S3 objects (DVC remote data, MLflow artifacts) in SeaweedFS's `s3/`, MLflow runs and the model registry in
`mlflow.db`, Prefect state in `prefect/`. Only `down --purge` deletes them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from components.stack import objectstore, procs
from components.stack.config import HOST, STATE_NAME, StackConfig, data_dir_from_env
from components.stack.env import s3_env
from components.stack.health import ServiceExited, http_json, wait_healthy
from components.stack.services import Service, base_env, executable, prefect_env, services
from components.stack.state import config_of, new_state, read_state, utc_now, write_state

Log = Callable[[str], None]
DURABLE_NOTE = "data persists across `down`/`up`; only `desta stack down --purge` deletes it"
# What the stack writes in its data dir: all of it goes with --purge, nothing else there is touched.
OWNED = ("s3", "mlflow.db", "mlflow.db-wal", "mlflow.db-shm", "prefect", "logs", objectstore.CREDENTIALS_NAME,
         objectstore.IDENTITIES_NAME, STATE_NAME, ".stack.lock")


class StackError(RuntimeError):
    """A service could not be started (the message names it and its log) or the state is unusable."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    title: str
    pid: int
    url: str
    log: str
    running: bool
    healthy: bool
    rss_mb: float


def _lock(data_dir: Path) -> FileLock:
    data_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(data_dir / ".stack.lock"), timeout=300)  # a concurrent `up` may take a while


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _running(entry: dict[str, Any]) -> bool:
    return procs.owns(entry["pid"], entry["argv"], entry.get("start_ticks"))


def _stop_all(state: dict[str, Any], timeout: float, log: Log) -> None:
    """Stop every service in the state, last started first (the worker before its server)."""
    for name, entry in reversed(list(state["services"].items())):
        pid = entry["pid"]
        if _running(entry):
            procs.terminate(pid, timeout)
            log(f"stopped {name} (pid {pid})")
        elif procs.alive(pid):
            log(f"{name}: pid {pid} now belongs to another process ({procs.cmdline(pid)}); left alone")
        else:
            procs.reap(pid)
            log(f"{name} (pid {pid}) was not running")


def s3_client(cfg: StackConfig):
    """boto3 on the stack's S3 with its credentials."""
    import boto3  # ~0.5 s import: only when needed

    env = {**base_env(), **s3_env(cfg)}
    return boto3.client(
        "s3", endpoint_url=cfg.s3_url, region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def ensure_buckets(cfg: StackConfig) -> None:
    """Both buckets, signed with the stack's keys (the gateway may answer /healthz before its filer is up)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    s3 = s3_client(cfg)
    for attempt in Retrying(stop=stop_after_delay(cfg.timeout), wait=wait_fixed(0.5), reraise=True,
                            retry=retry_if_exception_type((BotoCoreError, ClientError))):
        with attempt:
            have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for bucket in (cfg.dvc_bucket, cfg.mlflow_bucket):
                if bucket not in have:
                    s3.create_bucket(Bucket=bucket)


def _ensure_pool(cfg: StackConfig, log: Log) -> None:
    """Create the process work pool unless it exists (the Prefect db persists across restarts)."""
    try:
        http_json(f"{cfg.prefect_api_url}/work_pools/{cfg.pool}")
        return
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise StackError(f"prefect: could not look up work pool {cfg.pool!r}: HTTP {err.code}") from None
    # The CLI fills in the process worker's default job template, which a bare REST call would not.
    res = subprocess.run(
        [executable("prefect"), "work-pool", "create", cfg.pool, "--type", "process"],
        env={**base_env(), **prefect_env(cfg)}, capture_output=True, text=True, timeout=120,
    )
    if res.returncode != 0:
        raise StackError(f"prefect: creating work pool {cfg.pool!r} failed:\n{res.stdout}{res.stderr}")
    log(f"created work pool {cfg.pool!r} (type process)")


def _databases(cfg: StackConfig) -> list[Path]:
    return [cfg.data_dir / "mlflow.db", cfg.data_dir / "prefect" / "prefect.db"]


def _start(svc: Service, state: dict[str, Any], cfg: StackConfig) -> subprocess.Popen:
    proc = procs.spawn(svc.argv, svc.env, svc.log, cwd=cfg.data_dir)
    state["services"][svc.name] = {
        "pid": proc.pid, "port": svc.port, "url": svc.url, "log": str(svc.log), "started": utc_now().isoformat(),
        "argv": list(svc.argv), "start_ticks": procs.start_ticks(proc.pid),
    }
    write_state(cfg.state_file, state)  # at once: if `up` is killed now, `down` still finds this pid
    return proc


def _wait(svc: Service, proc: subprocess.Popen, state: dict[str, Any], timeout: float) -> None:
    started = datetime.fromisoformat(state["services"][svc.name]["started"])
    try:
        ok = wait_healthy(lambda: svc.healthy(started), timeout, lambda: proc.poll() is None)
    except ServiceExited:
        raise StackError(
            f"{svc.name} ({svc.title}) exited with code {proc.returncode} while starting; "
            f"see its log {svc.log}:\n{_tail(svc.log)}"
        ) from None
    if not ok:
        raise StackError(
            f"{svc.name} ({svc.title}) was not healthy at {svc.url} after {timeout:.0f} s; "
            f"see its log {svc.log}:\n{_tail(svc.log)}"
        )


def _start_s3(svc: Service, state: dict[str, Any], cfg: StackConfig, say: Log, tries: int = 3) -> Service:
    """Start the object store; its internal ports are picked free just before, so another process may
    take one in between: then it starts again on other ones (up to `tries` times)."""
    for attempt in range(1, tries + 1):
        proc = _start(svc, state, cfg)
        try:
            _wait(svc, proc, state, cfg.timeout)
        except StackError as err:
            taken = "Port allocation failed" in str(err) or "address already in use" in str(err)
            if not taken or attempt == tries:
                raise
            procs.terminate(proc.pid, 10.0)
            say(f"s3: an internal port was taken meanwhile; starting again on other ports ({attempt}/{tries})")
            svc = next(s for s in services(cfg) if s.name == "s3")  # new free internal ports
            continue
        say(f"s3 healthy: {svc.url} (pid {proc.pid})")
        return svc
    raise AssertionError("unreachable")


def up(cfg: StackConfig, log: Log = print) -> tuple[dict[str, Any], bool]:
    """Start S3, MLflow, Prefect server and worker; (state, True) or (existing state, False) if already up.

    On any failure everything started so far is stopped, the state file removed, and StackError raised.
    """
    t0 = time.perf_counter()

    def say(message: str) -> None:
        try:
            log(f"[{time.perf_counter() - t0:5.1f} s] {message}")
        except OSError:  # e.g. `up | head` closed the pipe: losing a log line must not tear the stack down
            pass

    with _lock(cfg.data_dir):
        old = read_state(cfg.state_file)
        if old is not None:
            if old["complete"] and all(_running(e) for e in old["services"].values()):
                return old, False
            say("stack is partly up or stale: stopping what is left before starting again")
            _stop_all(old, 15.0, say)
            cfg.state_file.unlink(missing_ok=True)

        objectstore.prepare(cfg.data_dir)
        defs = {s.name: s for s in services(cfg)}
        for svc in defs.values():  # fail before starting anything when a port is taken
            if svc.port is not None and not procs.port_free(HOST, svc.port):
                raise StackError(
                    f"{svc.name} ({svc.title}): port {svc.port} on {HOST} is already in use; "
                    f"choose another with --{svc.name}-port or DESTA_STACK_{svc.name.upper()}_PORT"
                )

        fresh = [db for db in _databases(cfg) if not db.exists()]
        state = new_state(cfg)
        try:
            _start_s3(defs["s3"], state, cfg, say)
            ensure_buckets(cfg)
            say(f"buckets ready: s3://{cfg.dvc_bucket} (DVC remote), s3://{cfg.mlflow_bucket} (MLflow artifacts)")
            # mlflow and prefect start side by side: their ~5 s import times overlap on 2 cores.
            for group in (["mlflow", "prefect"], ["worker"]):
                if group == ["worker"]:
                    _ensure_pool(cfg, say)
                started = [(defs[n], _start(defs[n], state, cfg)) for n in group]
                for svc, proc in started:
                    _wait(svc, proc, state, cfg.timeout)
                    say(f"{svc.name} healthy: {svc.url} (pid {proc.pid})")
            state["complete"] = True
            write_state(cfg.state_file, state)
            return state, True
        except BaseException as err:  # also Ctrl-C: never leave half a stack behind
            say(f"start-up failed ({type(err).__name__}); stopping what was started")
            _stop_all(state, 10.0, say)
            cfg.state_file.unlink(missing_ok=True)
            for db in fresh:  # a schema migration cut short leaves a db that fails every later start
                for part in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                    part.unlink(missing_ok=True)
            if isinstance(err, StackError) or not isinstance(err, Exception):
                raise
            raise StackError(f"start-up failed: {err}") from err


def load(data_dir: Path | None = None) -> dict[str, Any] | None:
    """The state of the stack in `data_dir` (default $DESTA_STACK_DIR or ./.stack), None if not up."""
    return read_state(data_dir_from_env(data_dir) / STATE_NAME)


def down(data_dir: Path | None = None, timeout: float = 15.0, log: Log = print, purge: bool = False) -> bool:
    """Stop exactly what `up` started (by pid, checked against its argv and start time); with `purge`, then
    delete everything the stack stored in its data dir. False if nothing was up."""
    data_dir = data_dir_from_env(data_dir)
    was_up = False
    if (data_dir / STATE_NAME).exists():
        with _lock(data_dir):
            state = read_state(data_dir / STATE_NAME)
            if state is not None:
                _stop_all(state, timeout, log)
                was_up = True
            (data_dir / STATE_NAME).unlink(missing_ok=True)
    if purge:
        _purge(data_dir, log)
    return was_up


def _purge(data_dir: Path, log: Log) -> None:
    """Delete what the stack wrote (OWNED), then the data dir if that left it empty."""
    for name in OWNED:
        path = data_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        log(f"deleted {path}")
    try:
        data_dir.rmdir()
    except OSError:
        pass  # not empty (the user's own files) or already gone


@dataclass(frozen=True)
class Storage:
    """Where the stack keeps its data and how much there is."""

    name: str
    path: Path
    bytes: int


def storage(cfg: StackConfig) -> list[Storage]:
    """The stack's stores on disk: S3 objects, MLflow runs/registry, Prefect state, logs."""
    places = [("s3", objectstore.data_path(cfg)), ("mlflow", cfg.data_dir / "mlflow.db"),
              ("prefect", cfg.data_dir / "prefect"), ("logs", cfg.logs_dir)]
    return [Storage(name, path, objectstore.disk_usage(path)) for name, path in places]


def s3_server() -> str:
    """The object store's binary and version, e.g. 'SeaweedFS 4.48 (/…/.venv/bin/weed)'."""
    weed = executable("weed")
    return f"SeaweedFS {objectstore.version(weed)} ({weed})"


def status(state: dict[str, Any]) -> list[ServiceStatus]:
    """One probe per service: running (our pid, alive) and healthy (its health check answers)."""
    cfg = config_of(state)
    defs = {s.name: s for s in services(cfg)}
    out = []
    for name, svc in defs.items():
        entry = state["services"].get(name)
        if entry is None:
            out.append(ServiceStatus(name, svc.title, 0, svc.url, str(svc.log), False, False, 0.0))
            continue
        running = _running(entry)
        healthy = running and svc.healthy(datetime.fromisoformat(entry["started"]))
        rss = procs.rss_mb(entry["pid"]) if running else 0.0
        out.append(ServiceStatus(name, svc.title, entry["pid"], entry["url"], entry["log"], running, healthy, rss))
    return out

