"""The evaluation's output files, relative to its out dir: what it writes, what MLflow logs, what the
run summary points at (a light module: no torch)."""

from __future__ import annotations

from pathlib import PurePosixPath

METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
PLOT_ACCURACY = "plots/attribute_accuracy.json"
# Confusion plots: one record per question ({"actual", "predicted"}), as DVC's confusion template counts them;
# an attribute without questions (no music clips: instrument) writes an empty list, which `dvc plots` skips.
CONFUSIONS = {"Gender": "plots/gender_confusion.json", "Pitch": "plots/pitch_confusion.json",
              "Instrument": "plots/instrument_confusion.json"}
FIGURES = "figures"  # the same data as PNG, for MLflow
ACCURACY_FIGURE = f"{FIGURES}/attribute_accuracy.png"
CONFUSION_FIGURES = {a: f"{FIGURES}/{PurePosixPath(name).stem}.png" for a, name in CONFUSIONS.items()}
OUTPUTS = (METRICS, PREDICTIONS, PLOT_ACCURACY, *CONFUSIONS.values(), ACCURACY_FIGURE, *CONFUSION_FIGURES.values())
