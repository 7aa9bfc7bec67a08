"""Thin wrappers over the `dvc` CLI for flows (subprocesses: DVC's Python API is not stable)."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from components.atomic import atomic_write_text
from components.stack.procs import alive

BIN = Path(sys.executable).parent
DEFAULT_REMOTE = "stack"


class DvcError(RuntimeError):
    """A `dvc` command failed; the message holds the command and the tail of its output."""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Stage commands call `desta`: make sure this venv's bin comes first.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "dvc"), *args]
    res = subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=capture, text=True)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip()[-2000:] if capture else "see output above"
        raise DvcError(f"`dvc {' '.join(args)}` failed (exit {res.returncode}): {detail}")
    return res


def _holds(info: dict[str, Any]) -> bool:
    return alive(int(info["pid"]))  # False for a gone pid and for a zombie


def clear_dead_lock_holders(cwd: Path) -> list[str]:
    """Drop entries of exited processes from DVC's rwlock; returns what was dropped ("PID n: cmd").

    DVC itself drops entries of pids that no longer exist, but not of zombies: when a flow is SIGKILLed,
    its orphaned `dvc repro` stays a zombie until PID 1 reaps it, which some container inits never do,
    and every later DVC command then fails with "is busy". Done under DVC's own rwlock guard
    (zc.lockfile on .dvc/tmp/rwlock.lock); if the guard is busy, DVC is working: leave it alone.
    """
    import zc.lockfile

    tmp = cwd / ".dvc" / "tmp"
    path = tmp / "rwlock"
    if not path.is_file():
        return []
    for _ in range(20):
        try:
            guard = zc.lockfile.LockFile(str(tmp / "rwlock.lock"))
            break
        except zc.lockfile.LockError:
            time.sleep(0.1)
    else:
        return []
    try:
        lock = json.loads(path.read_text() or "{}")
        dropped = {f"PID {i['pid']}: {i['cmd']}" for i in lock.get("write", {}).values() if not _holds(i)}
        dropped |= {f"PID {i['pid']}: {i['cmd']}" for infos in lock.get("read", {}).values() for i in infos if not _holds(i)}
        if dropped:
            lock["write"] = {p: i for p, i in lock.get("write", {}).items() if _holds(i)}
            lock["read"] = {p: kept for p, infos in lock.get("read", {}).items() if (kept := [i for i in infos if _holds(i)])}
            atomic_write_text(path, json.dumps(lock))
            print(f"warning: dropped DVC lock entries of exited processes: {'; '.join(sorted(dropped))}", file=sys.stderr)
        return sorted(dropped)
    finally:
        guard.close()


def stages(cwd: Path) -> list[str]:
    """Stage names of dvc.yaml in file order (the file lists them in dependency order)."""
    return list((yaml.safe_load((cwd / "dvc.yaml").read_text()) or {}).get("stages", {}))


def status(cwd: Path) -> dict[str, Any]:
    """Every changed stage with what changed, from ONE `dvc status --json` (~0.5 s; one call per stage was 5x).

    Keys are stage names (DVC prefixes `dvc.yaml:` for stages of other files; that prefix is dropped here).
    A stage downstream of a changed one is listed only once its own deps differ on disk: callers re-check
    after running a stage.
    """
    clear_dead_lock_holders(cwd)
    out = dvc("status", "--json", cwd=cwd).stdout.strip()
    raw = json.loads(out or "{}")
    return {name.rsplit(":", 1)[-1]: what for name, what in raw.items()}


def repro(stage: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    clear_dead_lock_holders(cwd)
    dvc("repro", "--single-item", stage, cwd=cwd, env=env, capture=False)


def _config(cwd: Path) -> configparser.ConfigParser:
    """.dvc/config overlaid by .dvc/config.local (what `dvc remote list` would read, without a subprocess)."""
    parser = configparser.ConfigParser()
    parser.read([cwd / ".dvc" / "config", cwd / ".dvc" / "config.local"])
    return parser


def remote(cwd: Path) -> tuple[str, dict[str, str]] | None:
    """(name, settings) of the default remote, or None when no default remote is configured."""
    cfg = _config(cwd)
    name = cfg.get("core", "remote", fallback=None)
    if not name:
        return None
    section = f"'remote \"{name}\"'"
    return (name, dict(cfg[section])) if cfg.has_section(section) else None


def has_remote(cwd: Path) -> bool:
    return remote(cwd) is not None


def ensure_remote(cwd: Path, name: str = DEFAULT_REMOTE) -> bool:
    """Point DVC at the S3 remote named by DESTA_DVC_REMOTE_URL (set by `desta stack env`).

    Written to .dvc/config.local (never committed); credentials stay in the environment.
    Returns whether a default remote is configured afterwards.
    """
    url = os.environ.get("DESTA_DVC_REMOTE_URL")
    if url:
        current = remote(cwd)
        endpoint = os.environ.get("DESTA_S3_ENDPOINT_URL")
        wanted = {"url": url, **({"endpointurl": endpoint} if endpoint else {})}
        if current is None or current[0] != name or any(current[1].get(k) != v for k, v in wanted.items()):
            dvc("remote", "add", "--local", "--force", "--default", name, url, cwd=cwd)
            if endpoint:
                dvc("remote", "modify", "--local", name, "endpointurl", endpoint, cwd=cwd)
    return has_remote(cwd)


def remote_endpoint(cwd: Path) -> str | None:
    """The HTTP endpoint the default remote talks to (S3 with an endpointurl), or None if not known."""
    found = remote(cwd)
    if found is None:
        return None
    _, settings = found
    return settings.get("endpointurl") or (os.environ.get("AWS_ENDPOINT_URL") if settings.get("url", "").startswith("s3://") else None)


def push(cwd: Path) -> str:
    """`dvc push` every output; returns its summary line (captured, so a failure quotes DVC's own message)."""
    clear_dead_lock_holders(cwd)
    out = dvc("push", cwd=cwd).stdout.strip()
    return out.splitlines()[-1] if out else ""


# S3 answers 500 InternalError when the server cannot store an object; SeaweedFS does so when its disk is full.
STORE_FAILED = ("the S3 server could not store the objects (InternalError: a full disk on the server is the usual "
                "cause: see its log and free space there; `desta stack status` shows the local stack's data dir). "
                "The outputs are complete here; the next run pushes them. DVC said: ")


def push_checked(cwd: Path) -> str:
    """Push to the default remote after checking its S3 endpoint answers; errors name the remote and endpoint."""
    from flows.services import ServiceUnavailable, check_s3

    found = remote(cwd)
    if found is None:
        raise DvcError("no default DVC remote configured")
    name, settings = found
    what = f"DVC remote {name!r} {settings.get('url', '?')}"
    endpoint = remote_endpoint(cwd)
    if endpoint:
        check_s3(endpoint, what)
    try:
        return push(cwd)
    except DvcError as err:
        hint = STORE_FAILED if "InternalError" in str(err) else ""
        raise ServiceUnavailable(f"pushing to the {what} (S3 endpoint {endpoint or 'default'}) failed: {hint}{err}") from None
