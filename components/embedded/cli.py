"""`desta setup`: prepare the embedded models once (cached) and link them under models/."""

from __future__ import annotations

from pathlib import Path

import typer

from components.console import console, fail


def setup_command(
    models_dir: Path = typer.Option(Path("models"), help="Where the prepared models are linked."),
) -> None:
    """Prepare the embedded models (once, cached) and link them under models/."""
    from components.embedded.prepare import prepare_all

    try:
        infos = prepare_all(models_dir, log=lambda m: console.print(f"[cyan]setup:[/] {m}"))
    except (FileNotFoundError, FileExistsError) as err:
        fail(str(err))
    for info in infos:
        console.print(
            f"[green]ready[/] {models_dir / info['name']} <- {info['package']}=={info['version']} "
            f"sha256:{info['sha256'][:12]}"
        )
