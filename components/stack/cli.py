"""`desta stack up|down|status|env`: the local S3 (SeaweedFS) + MLflow + Prefect stack on 127.0.0.1."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

import typer
from rich.console import Console

from components.console import fail
from components.stack import manager
from components.stack.config import StackConfig, data_dir_from_env
from components.stack.env import FOREIGN, client_env
from components.stack.objectstore import CREDENTIALS_NAME, human
from components.stack.state import config_of

app = typer.Typer(
    help="Local stack on 127.0.0.1: S3 (SeaweedFS, on disk, credentials required), MLflow tracking server, "
         "Prefect server + process worker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

DataDirOpt = typer.Option(None, "--data-dir", help="S3 data, sqlite dbs, credentials, state and logs (env DESTA_STACK_DIR, default ./.stack).")
SECRET = "AWS_SECRET_ACCESS_KEY"


def _progress(message: str, stream: TextIO | None = None) -> None:
    """Progress lines, plainly: rich turns a closed pipe into SystemExit, which would abort `up` half-way."""
    stream = stream or sys.stderr
    try:
        stream.write(message + "\n")
        stream.flush()
    except OSError:
        pass


def _exports(state: dict, secret: bool = True) -> list[str]:
    """`export` lines for a client of the stack; without `secret`, the S3 secret is left out (printed by `env` only)."""
    return [f"export {k}={shlex.quote(v)}" for k, v in client_env(config_of(state)).items() if secret or k != SECRET]


@app.command()
def up(
    data_dir: Optional[Path] = DataDirOpt,  # noqa: UP045
    s3_port: Optional[int] = typer.Option(None, help="S3 port (env DESTA_STACK_S3_PORT, default 19000)."),  # noqa: UP045
    mlflow_port: Optional[int] = typer.Option(None, help="MLflow port (env DESTA_STACK_MLFLOW_PORT, default 15000)."),  # noqa: UP045
    prefect_port: Optional[int] = typer.Option(None, help="Prefect port (env DESTA_STACK_PREFECT_PORT, default 14200)."),  # noqa: UP045
    dvc_bucket: Optional[str] = typer.Option(None, help="DVC remote bucket (env DESTA_STACK_DVC_BUCKET, default desta-dvc)."),  # noqa: UP045
    mlflow_bucket: Optional[str] = typer.Option(None, help="MLflow artifacts bucket (env DESTA_STACK_MLFLOW_BUCKET, default desta-mlflow)."),  # noqa: UP045
    pool: Optional[str] = typer.Option(None, help="Prefect process work pool (env DESTA_STACK_POOL, default desta-process)."),  # noqa: UP045
    timeout: Optional[float] = typer.Option(None, help="Seconds each service gets to become healthy (env DESTA_STACK_TIMEOUT, default 90)."),  # noqa: UP045
) -> None:
    """Start the stack (no-op if it is already up), with the data a previous `up` stored."""
    try:
        cfg = StackConfig.resolve(
            data_dir=data_dir, s3_port=s3_port, mlflow_port=mlflow_port, prefect_port=prefect_port,
            dvc_bucket=dvc_bucket, mlflow_bucket=mlflow_bucket, pool=pool, timeout=timeout,
        )
    except ValueError as e:
        fail(str(e), code=2)
    # SIGTERM becomes SystemExit, so `up` still stops what it started (it cleans up on any BaseException).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    t0 = time.perf_counter()
    try:
        state, started = manager.up(cfg, log=_progress)
    except (manager.StackError, ValueError, OSError) as e:
        fail(str(e))
    if started:
        out.print(f"[green]stack up[/] in {time.perf_counter() - t0:.1f} s (data dir {cfg.data_dir})", highlight=False)
    else:
        out.print(f"[yellow]stack already up[/] (data dir {config_of(state).data_dir}); nothing started", highlight=False)
    for name, entry in state["services"].items():
        out.print(f"  {name:8} {entry['url']:28} pid {entry['pid']:<7} log {entry['log']}", highlight=False, soft_wrap=True)
    out.print(f"note: {manager.DURABLE_NOTE} (data dir {config_of(state).data_dir})", highlight=False, soft_wrap=True)
    out.print('Use it with: eval "$(desta stack env)"  (it exports these, and the S3 secret):')
    out.print("\n".join(_exports(state, secret=False)), highlight=False, soft_wrap=True)


@app.command()
def down(
    data_dir: Optional[Path] = DataDirOpt,  # noqa: UP045
    timeout: float = typer.Option(15.0, help="Seconds to wait after SIGTERM before SIGKILL."),
    purge: bool = typer.Option(False, "--purge", help="Also delete every stored S3 object, MLflow run and Prefect state."),
) -> None:
    """Stop what `up` started (by pid from the state file); the data stays unless --purge. Idempotent."""
    try:
        was_up = manager.down(data_dir, timeout, log=lambda m: _progress(m, sys.stdout), purge=purge)
    except (ValueError, OSError) as e:
        fail(str(e))
    where = data_dir_from_env(data_dir)
    if was_up:
        out.print("[green]stack down[/]", highlight=False)
    else:
        out.print(f"stack was not up (no state file in {where})", highlight=False)
    out.print(f"data purged from {where}" if purge else f"data kept in {where} (`desta stack down --purge` deletes it)",
              highlight=False, soft_wrap=True)


@app.command()
def status(data_dir: Optional[Path] = DataDirOpt) -> None:  # noqa: UP045
    """One line per service: running/dead, pid, url, health, memory. Exits 1 unless all are up and healthy."""
    try:
        state = manager.load(data_dir)
    except ValueError as e:
        fail(str(e))
    if state is None:
        fail(f"stack is not up (no state file in {data_dir_from_env(data_dir)})")
    rows = manager.status(state)
    cfg = config_of(state)
    out.print(f"desta stack in {cfg.data_dir}; S3 server: {manager.s3_server()}", highlight=False, soft_wrap=True)
    for r in rows:
        run = "[green]running[/]" if r.running else "[red]dead[/]   "
        health = "[green]healthy[/]" if r.healthy else "[red]failing[/]"
        rss = f"{r.rss_mb:5.0f} MiB" if r.running else "     - MiB"
        out.print(f"  {r.name:8} {run} pid {r.pid or '-':<7} {r.url:28} {health} {rss}  log {r.log}",
                  highlight=False, soft_wrap=True)
    for st in manager.storage(cfg):
        out.print(f"  data {st.name:8} {human(st.bytes):>10}  {st.path}", highlight=False, soft_wrap=True)
    out.print(f"note: {manager.DURABLE_NOTE}", highlight=False, soft_wrap=True)
    if not all(r.running and r.healthy for r in rows):
        raise typer.Exit(1)


@app.command("env")
def env_cmd(data_dir: Optional[Path] = DataDirOpt) -> None:  # noqa: UP045
    """Print `export ...` lines for a running stack: eval "$(desta stack env)"."""
    try:
        state = manager.load(data_dir)
    except ValueError as e:
        fail(str(e))
    if state is None:
        fail(f"stack is not up (no state file in {data_dir_from_env(data_dir)})")
    print(f"# the stack's S3 keys (from {config_of(state).data_dir / CREDENTIALS_NAME}); they replace any AWS keys set")
    print(f"unset {' '.join(FOREIGN)}")
    print("\n".join(_exports(state)))


if __name__ == "__main__":
    app()
