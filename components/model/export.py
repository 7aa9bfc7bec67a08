"""The model export on disk: `model.safetensors` (trainable weights + connector statistics) and a
`config.json` naming the backbones, written atomically; read back in this layout or the official
DeSTA2.5-Audio one. Knows files, not modules: `DestaModel` builds and loads what this returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from components.config import ModelConfig
from components.model.backbones import CONFIG_FILE, FORMAT, WEIGHTS_FILE, DestaSpec
from components.model.official import official_parts
from components.records import DamagedFile, rewrite


class Export(NamedTuple):
    """What an export holds: the spec to build, its trainable state, the precision it names, a label."""

    spec: DestaSpec
    state: dict[str, torch.Tensor]
    precision: str | None
    source: str


def write_export(out_dir: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write weights + config into `out_dir` all at once (a reader never sees half an export)."""
    from safetensors.torch import save_file

    from components.atomic import atomic_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")
        (tmp / WEIGHTS_FILE).chmod(0o644)
    return out_dir


def read_export(path: str | Path, whisper: str | None = None, llm: str | None = None) -> Export:
    """Read an export (ours or the official layout); backbones may be overridden by path.

    The weights are read before any backbone loads: a torn copy fails in a second, naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise DamagedFile(f"{path / CONFIG_FILE}: not JSON ({err})", rewrite("`desta train`")) from None
    if config.get("model_type") == "desta25":
        spec, state = official_parts(path, config, whisper, llm)
        return Export(spec, state, None, f"{path} (official layout)")
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}: not a DeSTA model export (format {config.get('format')!r})")
    spec = DestaSpec(whisper or config["whisper"], llm or config["llm"], ModelConfig(**config["model"]))
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise DamagedFile(f"{path / WEIGHTS_FILE}: unreadable weights ({err})", rewrite("`desta train`")) from None
    return Export(spec, state, config.get("precision"), str(path))
