"""The promotion gate: move the registered model's `champion` alias only for a real improvement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAMPION, CANDIDATE = "champion", "candidate"
TAG_PREFIX = "desta.eval."


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(new: dict[str, float], champion: dict[str, float] | None, primary: str, margin: float,
           forgetting_bound: float) -> Decision:
    """Promote when the primary metric beats the champion's by `margin` and forgetting is within bound."""
    if primary not in new or new[primary] is None:
        return Decision(False, f"new model has no {primary!r}")
    forgetting = new.get("forgetting_rate")
    # Forgetting is (IF_audio - IF_text) / IF_text: negative means worse than the frozen backbone.
    if forgetting is not None and forgetting < -forgetting_bound:
        return Decision(False, f"forgetting rate {forgetting:.3f} is beyond the bound -{forgetting_bound}")
    if champion is None or champion.get(primary) is None:
        return Decision(True, "first evaluated model: becomes champion")
    gain = new[primary] - champion[primary]
    if gain > margin:
        return Decision(True, f"{primary} {new[primary]:.2f} beats champion {champion[primary]:.2f} by {gain:.2f} > {margin}")
    return Decision(False, f"{primary} {new[primary]:.2f} vs champion {champion[primary]:.2f}: gain {gain:.2f} <= {margin}")


def apply_gate(name: str, version: str, metrics: dict[str, Any], primary: str, margin: float,
               forgetting_bound: float) -> Decision:
    """Tag the version with its metrics, compare with `champion`, and move `champion` or `candidate`."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from components.stage import numeric
    from components.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    flat = {k: float(v) for k, v in numeric(metrics).items()}
    for key, value in flat.items():
        client.set_model_version_tag(name, version, TAG_PREFIX + key, str(value))
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    champion = None
    if current is not None and str(current.version) != str(version):
        champion = {k[len(TAG_PREFIX):]: float(v) for k, v in current.tags.items() if k.startswith(TAG_PREFIX)}
    decision = decide(flat, champion, primary, margin, forgetting_bound)
    client.set_registered_model_alias(name, CHAMPION if decision.promote else CANDIDATE, str(version))
    client.set_model_version_tag(name, version, "desta.gate", ("promoted: " if decision.promote else "held: ") + decision.reason)
    return decision


def gated_version(model_dir: Path, name: str) -> tuple[str | None, str]:
    """(version of `name` to gate, how it was found). In a DVC repo: the version whose training run logged
    this export's DVC md5 (found through MLflow, so a fresh clone after `dvc pull` gates the right one; no
    match, no gate). Outside one: the version `desta train` recorded beside the export."""
    from components.lineage.digests import find_root, hash_paths
    from components.lineage.log import out_tag
    from components.records import registered_version
    from components.tracking import version_logged_with

    root = find_root(model_dir)
    if root is None:
        version = registered_version(model_dir)
        return version, f"recorded by train in {model_dir.parent / 'checkpoints'} (not in a DVC repo)"
    rel = model_dir.resolve().relative_to(root).as_posix()
    md5 = hash_paths(root, [rel])[rel].md5
    return version_logged_with(name, out_tag(rel), md5), f"its training run logged {rel} with DVC md5 {md5}"
