"""`desta train`: DeepSpeed ZeRO training of the DeSTA connector on DeSTA-AQA5M rows (components/train/launch.py).

Runnable on its own as `python -m components.train.cli`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from components.console import ParamsOpt, console, fail, require_tracking
from components.stage import data_dir


def train_command(
    rows: Optional[Path] = typer.Option(None, "--in", help="AQA rows: a .jsonl or a directory (default: <data.root>/label)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/train): model/, checkpoints/, metrics."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    fresh: bool = typer.Option(False, help="Drop existing checkpoints and start over (default: resume the same run)."),
    track: bool = typer.Option(True, help="Log the run to MLflow (rank 0) and register the model."),
    encoder_cache: Optional[Path] = typer.Option(None, help="Encoder-state cache dir (default: $DESTA_CACHE/encoder-states)."),  # noqa: UP045
    nnodes: int = typer.Option(1, help="Nodes in the run: start one `desta train` per node, each with its --node-rank."),
    node_rank: int = typer.Option(0, help="This node's rank (0 prepares the run; rank 0 writes the outputs)."),
    master_addr: str = typer.Option("127.0.0.1", help="Node 0's address, the same on every node."),
    master_port: Optional[int] = typer.Option(None, help="Rendezvous port on node 0 (needed with --nnodes > 1)."),  # noqa: UP045
) -> None:
    """Train the Q-Former connector (and LoRA) with DeepSpeed; resumes after a crash."""
    from components.config import ConfigError, load_params
    from components.train.launch import Nodes, TrainError, train

    try:
        p = load_params(params)
    except ConfigError as err:
        fail(str(err))
    prof = p.active
    if track and node_rank == 0:
        require_tracking(stage=True)
    rows, out = data_dir(prof, rows, "label"), data_dir(prof, out, "train")
    t0 = time.perf_counter()
    try:
        nodes = Nodes(nnodes, node_rank, master_addr, master_port)
        where = f" on node {node_rank} of {nnodes}" if nnodes > 1 else ""
        console.print(f"[cyan]train:[/] {prof.train.ranks} x {prof.train.device} ranks{where}, "
                      f"{prof.train.deepspeed_config}, {prof.train.precision}; rows {rows} -> {out}")
        result = train(prof, p.profile, rows, out, track=track, fresh=fresh, encoder_cache=encoder_cache, nodes=nodes)
    except TrainError as err:
        fail(str(err))
    m = result.metrics
    if result.skipped:
        console.print(f"[green]train[/] already done for these params and rows: {result.model_dir}")
        return
    console.print(
        f"[green]train[/] {m['steps']} steps (resumed from {result.resumed_from}) in {time.perf_counter() - t0:.0f} s: "
        f"loss {m['loss_first']:.3f} -> {m['loss_last']:.3f}, {m['samples_per_s']:.1f} samples/s, "
        f"peak RSS per rank {m['peak_rss_mb_per_rank']} MB, rows {m['rows']} "
        f"(truncated {m['rows_truncated']}, skipped {m['rows_skipped_too_long']}) -> {result.model_dir}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("train")(train_command)

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()
