"""Held-out figures over several training seeds: the same label rows trained once per `train.seed` and
evaluated on the same held-out questions, then per attribute the mean, spread (sample standard
deviation), lowest and highest, beside the text-only prior (which no training seed changes), chance, the
score of one fixed answer (`majority`) and the number of questions. A change is judged against this noise, not against one run.

Each seed trains into `<out>/seed-<n>/train` and evaluates into `<out>/seed-<n>/evaluate`, outside the
DVC pipeline's outputs (`data/train`, `data/evaluate` stay as `dvc repro` left them). Idempotent: a
finished training is skipped by its own fingerprint (components/train/launch.py) and an evaluation is
reused while its model and the evaluate params are the ones it was made from; `spread.json` is written
last, atomically.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components.atomic import atomic_write_text
from components.evaluate.outputs import METRICS

SPREAD = "spread.json"
KINDS = ("forced_choice", "string_match")
MADE_FROM = "made_from.json"  # in each seed's evaluate dir: the model and params the metrics came from


def summarise(runs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """seed -> evaluation metrics  =>  per kind and attribute: mean, std, min, max and each seed's value."""
    seeds = sorted(runs)
    first = runs[seeds[0]]["per_attribute"]
    table: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for attribute in first[kind]:
            values = [runs[s]["per_attribute"][kind][attribute] for s in seeds]
            table.setdefault(attribute, {})[kind] = {
                "mean": round(statistics.fmean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values), "values": values}
    for attribute, row in table.items():
        row["prior_forced_choice"] = first["prior_forced_choice"].get(attribute)  # no audio: the same every seed
        row["chance"] = first["chance"].get(attribute)
        row["majority"] = first.get("majority", {}).get(attribute)  # one fixed answer's score (metrics of old runs: None)
        row["questions"] = first.get("questions", {}).get(attribute)
    return {"seeds": seeds, "per_attribute": table}


def _made_from(model_dir: Path, prof: Any) -> str:
    config = (model_dir / "config.json").read_bytes()
    evaluate = json.dumps(prof.evaluate.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(config + evaluate.encode() + prof.seeds.engine.encode()).hexdigest()


def spread(prof: Any, profile_name: str, seeds: Sequence[int], rows: Path, seeds_dir: Path, out: Path,
           show_progress: bool = True, on_seed: Callable[[int, str], None] = lambda seed, what: None) -> dict[str, Any]:
    """Train and evaluate once per training seed; writes and returns the summary (`summarise`)."""
    from components.evaluate.run import evaluate_trained
    from components.train.launch import train

    if len(set(seeds)) < 2:
        raise ValueError(f"a spread needs at least two different training seeds, got {list(seeds)}")
    runs = {}
    for seed in seeds:
        p = prof.model_copy(update={"train": prof.train.model_copy(update={"seed": seed})})
        where = out / f"seed-{seed}"
        result = train(p, profile_name, rows, where / "train", track=False)
        on_seed(seed, "trained (already done)" if result.skipped else "trained")
        evaluated, made_from = where / "evaluate", _made_from(result.model_dir, p)
        marker = evaluated / MADE_FROM
        if (evaluated / METRICS).is_file() and marker.is_file() and json.loads(marker.read_text()) == made_from:
            runs[seed] = json.loads((evaluated / METRICS).read_text())
            on_seed(seed, "evaluated (already done)")
            continue
        marker.unlink(missing_ok=True)
        runs[seed] = evaluate_trained(p, result.model_dir, seeds_dir, evaluated, show_progress)
        atomic_write_text(marker, json.dumps(made_from) + "\n")
        on_seed(seed, "evaluated")
    summary = summarise(runs)
    atomic_write_text(out / SPREAD, json.dumps(summary, indent=2) + "\n")
    return summary
