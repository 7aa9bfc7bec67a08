"""One training rank: `python -m components.train.worker --job OUT/job.json`.

Started by `desta train` through torchrun (one node) or the DeepSpeed launcher (hostfile); never by
hand. Every rank builds the model and the batch plan, DeepSpeed runs ZeRO over the trainable
weights, rank 0 alone writes history/metrics/export and talks to MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from components.train.reports import error_dirs

# Everything but the process shell lives in the recipe; these names stay importable from here.
from components.train.recipe import (  # noqa: F401
    _T0,
    NaNLoss,
    TrainRecipe,
    _summary,
    _tracking,
    _write_json,
    latest_tag,
    peak_rss_mb,
    prune,
    step_seed,
)

EXIT_DATA, EXIT_NAN, EXIT_ORPHANED = 2, 3, 4


def exit_with_parent() -> None:
    """Stop this rank if its launcher dies (torchrun starts ranks in their own sessions, so a killed
    `desta train` would otherwise leave them training, and a re-run would race them)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(job: dict[str, Any]) -> int:
    """One rank's training: the recipe's phases in order; failures raise (`main` maps them to exit codes)."""
    recipe = TrainRecipe(job)
    recipe.setup()
    with recipe.tracking():  # rank 0's MLflow run, when tracked
        recipe.train()
        recipe.export()
        recipe.register()
    recipe.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True, type=Path)
    args = parser.parse_args(argv)
    exit_with_parent()
    job = json.loads(args.job.read_text())
    rank = int(os.environ.get("RANK", 0))
    from components.train.data import TrainDataError

    try:
        return run(job)
    except BaseException as err:  # noqa: BLE001 -- every failure is reported to the launcher, then re-raised as a code
        code = EXIT_NAN if isinstance(err, NaNLoss) else EXIT_DATA if isinstance(err, TrainDataError) else 1
        report = {"rank": rank, "type": type(err).__name__, "message": str(err), "code": code,
                  "errno": getattr(err, "errno", None), "traceback": traceback.format_exc()[-4000:]}
        for errors in error_dirs(Path(job["out"]), job["fingerprint"]):
            try:  # the output disk may be the one that is full: then beside the system's temp files
                errors.mkdir(parents=True, exist_ok=True)
                _write_json(errors / f"rank{rank}.json", report)
                break
            except OSError:
                continue
        print(f"[train rank {rank}] {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
