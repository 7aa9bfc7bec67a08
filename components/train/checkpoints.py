"""DeepSpeed checkpoints of a training run: save one, find the newest complete one, prune old ones."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from components.atomic import out_of_space


def save(engine: Any, ckpt_dir: Path, step: int, client_state: dict[str, Any]) -> None:
    """Checkpoint `step-<step>` (trainable weights, optimizer, schedule). On failure the part-written tag
    goes (it never became `latest`: the last good one stays what a re-run resumes from); a full disk is
    raised as ENOSPC naming the dir (torch.save's zip writer loses the errno: "unexpected pos")."""
    tag = f"step-{step:08d}"
    try:
        engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, exclude_frozen_parameters=True)
    except (RuntimeError, OSError) as err:
        full = out_of_space(ckpt_dir) if isinstance(err, RuntimeError) else None  # before the part goes
        shutil.rmtree(ckpt_dir / tag, ignore_errors=True)
        raise full or err from err


def latest_tag(ckpt_dir: Path) -> str | None:
    """The newest complete DeepSpeed checkpoint (DeepSpeed writes `latest` after saving it)."""
    latest = ckpt_dir / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    return tag if (ckpt_dir / tag).is_dir() else None


def prune(ckpt_dir: Path, keep: int) -> None:
    tags = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
