"""PNG figures of a stage's plot data, for MLflow (where people look at a run) beside the JSON that
`dvc plots show` renders: the loss curve, per-attribute accuracy beside the text-only prior and chance,
and confusion matrices. matplotlib's Agg backend (no display); each file is written atomically."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.atomic import named


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # the name atomic.clear_temps removes after a kill
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as err:  # a full disk: say which file (savefig's error names none)
        raise named(err, path) from err
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def loss_curve(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Training loss per optimizer step."""
    fig, ax = _figure(6, 3.5)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=1.2)
    ax.set(xlabel="step", ylabel="loss", title="Training loss")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_bars(bars: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per attribute: the model's forced-choice accuracy beside the text-only prior and chance (%)."""
    fig, ax = _figure(max(6, 1.1 * len(bars)), 3.8)
    names = [b["attribute"] for b in bars]
    series = (("forced_choice", "model (audio)"), ("prior_forced_choice", "text-only prior"), ("chance", "chance"))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        xs = [j + (i - 1) * width for j in range(len(bars))]
        ax.bar(xs, [b.get(key) or 0.0 for b in bars], width, label=label)
    ax.set_xticks(range(len(bars)), names, rotation=30, ha="right")
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title="Held-out forced choice")
    ax.legend(fontsize=8)
    return _save(fig, path)


def confusion(pairs: Sequence[tuple[str, str]], title: str, path: Path, order: Sequence[str] = ()) -> Path:
    """Counts of (actual, predicted) pairs as a matrix; rows = actual. `order` first, then the rest sorted."""
    counts = Counter(pairs)
    labels = list(order) + sorted({x for p in counts for x in p} - set(order))
    labels = [x for x in labels if any(x in p for p in counts)] or ["(none)"]
    fig, ax = _figure(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels))
    grid = [[counts.get((a, p), 0) for p in labels] for a in labels]
    ax.imshow(grid, cmap="Blues")
    top = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color="white" if n > top / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    return _save(fig, path)
