"""`desta lineage MODEL_VERSION | --run-id RUN`: print and verify a model's lineage chain.

Exit 0 when every link is present (model version -> training run -> label shards -> seed shards ->
ingested corpus -> raw sources, every DVC object in the remote); 1 naming the broken link(s) otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from components.console import fail, require_tracking

console = Console(stderr=True)


def _default_name(params: Optional[Path]) -> Optional[str]:  # noqa: UP045
    from components.config import ConfigError, load_params

    try:
        return load_params(params).active.tracking.registered_model
    except (ConfigError, OSError):
        return None


def lineage_command(
    model_version: Optional[str] = typer.Argument(  # noqa: UP045
        None, help="VERSION, ALIAS (e.g. champion), NAME/VERSION, NAME@ALIAS or models:/NAME/VERSION."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Start from an MLflow run instead."),  # noqa: UP045
    name: Optional[str] = typer.Option(  # noqa: UP045
        None, "--name", help="Registered model (default: tracking.registered_model of params.yaml)."),
    remote: Optional[str] = typer.Option(  # noqa: UP045
        None, "--remote", help="DVC remote URL for objects logged without one (default: $DESTA_DVC_REMOTE_URL, "
        "else the DVC default remote)."),
    check_remote: bool = typer.Option(True, help="HEAD every DVC object in the remote."),
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON on stdout."),
    params: Optional[Path] = typer.Option(None, "--params", help="params.yaml (for the default model name)."),  # noqa: UP045
) -> None:
    """Print the lineage chain of a model version or run (digests, S3 URIs) and verify every link."""
    from components.lineage.chain import walk
    from components.lineage.digests import find_root, remote_config

    if bool(model_version) == bool(run_id):
        fail("give a MODEL_VERSION or --run-id (one of them)", 2)
    require_tracking()  # a dead server is not a broken link
    url, endpoint = remote_config(find_root())
    try:
        chain = walk(model_version, run_id, name or _default_name(params), remote or url, endpoint, check_remote)
    except ValueError as err:
        fail(str(err), 2)
    if as_json:
        print(json.dumps(chain.as_dict(), indent=2))
    else:
        table = Table(title=f"lineage of {chain.start}", show_lines=False)
        for col in ("link", "digest", "location", "detail", "ok"):
            table.add_column(col, overflow="fold", no_wrap=col in {"digest", "location"})
        for link in chain.links:
            table.add_row("  " * link.level + f"{link.kind}: {link.name}", link.digest or "", link.uri or "",
                          link.detail, "[green]ok[/]" if link.ok else "[bold red]BROKEN[/]")
        out = Console()
        (out if out.is_terminal else Console(width=260)).print(table)  # files/pipes: one line per link
    if not chain.ok:
        for b in chain.broken or [None]:
            console.print(f"[bold red]broken link:[/] {b.problem if b else 'empty chain'}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]lineage complete[/]: {len(chain.links)} links, every DVC object present in the remote"
                  if check_remote else f"[green]lineage complete[/]: {len(chain.links)} links (remote not checked)")
