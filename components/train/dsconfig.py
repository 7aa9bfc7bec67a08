"""The effective DeepSpeed config: the ZeRO template from infra/deepspeed/ + the knobs in params.

The template sets the ZeRO stage and offload; batch shape, clipping, optimizer and precision always
come from params `train` (a template value for them is replaced, so there is one source of truth).

Precision: `bf16` keeps DeepSpeed in fp32 (trainable weights, gradients and AdamW state in fp32)
while the model stores its frozen LLM in bf16 and runs every forward under bf16 autocast — the
official trainer's bf16-mixed; `fp32` is the same without autocast; `fp16` is DeepSpeed's fp16 mode
with dynamic loss scaling (CUDA only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config import TrainConfig

PRECISION_KEYS = ("bf16", "fp16", "torch_autocast", "amp")


def zero_stage(cfg: dict[str, Any]) -> int:
    return int(cfg.get("zero_optimization", {}).get("stage", 0))


def offloads(cfg: dict[str, Any]) -> bool:
    zo = cfg.get("zero_optimization", {})
    return any(zo.get(k, {}).get("device", "none") not in ("none", None) for k in ("offload_optimizer", "offload_param"))


def build(template: Path, train: TrainConfig, world: int) -> dict[str, Any]:
    try:
        cfg = json.loads(Path(template).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"DeepSpeed config not found: {template} (params train.deepspeed_config)") from None
    for k in PRECISION_KEYS:
        cfg.pop(k, None)
    cfg.update({
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": train.batch_size * train.grad_accum * world,
        "gradient_clipping": train.grad_clip,
        # torch's AdamW: no optimizer op to compile (DeepSpeed was installed with DS_BUILD_OPS=0)
        "optimizer": {"type": "AdamW", "params": {
            "lr": train.lr, "betas": list(train.betas), "eps": 1e-8, "weight_decay": train.weight_decay,
            "torch_adam": True,
        }},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": cfg.get("steps_per_print", 10**9),
    })
    if train.precision == "fp16":
        cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    if offloads(cfg):
        cfg["zero_force_ds_cpu_optimizer"] = False  # keep torch AdamW on the offloaded partitions
    return cfg
