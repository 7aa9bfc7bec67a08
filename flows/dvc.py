"""Thin wrappers over the `dvc` CLI for flows (subprocesses: DVC's Python API is not stable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Stage commands call `desta`: make sure this venv's bin comes first.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "dvc"), *args]
    res = subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=capture, text=True)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip()[-2000:] if capture else "see output above"
        raise RuntimeError(f"`dvc {' '.join(args)}` failed (exit {res.returncode}): {detail}")
    return res


def stages(cwd: Path) -> list[str]:
    """Stage names of dvc.yaml in file order (the file lists them in dependency order)."""
    return list((yaml.safe_load((cwd / "dvc.yaml").read_text()) or {}).get("stages", {}))


def is_up_to_date(stage: str, cwd: Path) -> bool:
    out = dvc("status", stage, "--json", cwd=cwd).stdout.strip()
    return not json.loads(out or "{}")


def repro(stage: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    dvc("repro", "--single-item", stage, cwd=cwd, env=env, capture=False)


def has_remote(cwd: Path) -> bool:
    return bool(dvc("remote", "list", cwd=cwd).stdout.strip())


def ensure_remote(cwd: Path, name: str = "stack") -> bool:
    """Point DVC at the S3 remote named by DESTA_DVC_REMOTE_URL (set by `desta stack env`).

    Written to .dvc/config.local (never committed); credentials stay in the environment.
    Returns whether a remote is configured afterwards.
    """
    url = os.environ.get("DESTA_DVC_REMOTE_URL")
    if url:
        dvc("remote", "add", "--local", "--force", "--default", name, url, cwd=cwd)
        endpoint = os.environ.get("DESTA_S3_ENDPOINT_URL")
        if endpoint:
            dvc("remote", "modify", "--local", name, "endpointurl", endpoint, cwd=cwd)
    return has_remote(cwd)


def push(cwd: Path) -> None:
    dvc("push", cwd=cwd, capture=False)
