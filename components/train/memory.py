"""Per-GPU memory of DeSTA training under each ZeRO mode, on paper (no GPU needed).

`python -m components.train.memory` prints the table for the `paper` profile on 8 x 80 GB GPUs.
Backbone shapes: read from a local config when the backbone is present, else the published ones
(Llama-3.1-8B-Instruct, whisper-large-v3). Byte counts follow the training set-up here: frozen LLM
stored in bf16, frozen Whisper encoder in fp32 outside the engine (one copy per rank), trainable
connector/LoRA weights, gradients and AdamW moments in fp32 (bf16 autocast for compute).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

GB = 1e9
# Published configs (config.json of the hub repos), used when the backbone is not on this machine.
KNOWN = {
    "meta-llama/Llama-3.1-8B-Instruct": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                                         "num_key_value_heads": 8, "intermediate_size": 14336,
                                         "vocab_size": 128256, "tie_word_embeddings": False},
    "openai/whisper-large-v3": {"d_model": 1280, "encoder_layers": 32, "encoder_ffn_dim": 5120,
                                "num_mel_bins": 128, "max_source_positions": 1500},
}
BUCKET = 5e8  # DeepSpeed's default reduce/allgather bucket (elements)


def backbone_config(name: str) -> dict[str, Any]:
    from components.modeldir import local_dir

    d = local_dir(name)
    if d is not None and (d / "config.json").is_file():
        return json.loads((d / "config.json").read_text())
    if name in KNOWN:
        return KNOWN[name]
    raise ValueError(f"no local config for {name} and its shape is not known here")


def llm_params(c: dict[str, Any]) -> int:
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c.get("num_key_value_heads", c["num_attention_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * c["intermediate_size"] + 2 * h
    return vocab * h * (1 if c.get("tie_word_embeddings") else 2) + layers * per_layer + h


def encoder_params(c: dict[str, Any]) -> int:
    d, f = c["d_model"], c["encoder_ffn_dim"]
    per_layer = 4 * d * d + 3 * d + 2 * d * f + f + d + 4 * d  # q,k,v,o (k without bias), fc1/fc2, 2 LayerNorms
    conv = c["num_mel_bins"] * d * 3 + d + d * d * 3 + d
    return conv + c["max_source_positions"] * d + c["encoder_layers"] * per_layer + 2 * d


def connector_params(model: Any, d: int, llm_width: int) -> int:
    f, n_layers = model.qformer_intermediate, len(model.encoder_layers)
    attn = 4 * (d * d + d) + 2 * d
    per_layer = 2 * attn + d * f + f + f * d + d + 2 * d
    return n_layers * model.prompt_size * d + model.prompt_size * n_layers + model.qformer_layers * per_layer + 2 * d + d * llm_width + llm_width


def lora_params(model: Any, c: dict[str, Any]) -> int:
    if not model.lora.enabled:
        return 0
    h = c["hidden_size"]
    kv = h // c["num_attention_heads"] * c.get("num_key_value_heads", c["num_attention_heads"])
    dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h)}
    return c["num_hidden_layers"] * sum(model.lora.r * (i + o) for m, (i, o) in dims.items() if m in model.lora.target_modules)


@dataclass
class Row:
    mode: str
    frozen_llm: float
    encoder: float
    trainable: float
    grads: float
    optimizer: float
    buckets: float
    activations: float
    total: float
    cpu_per_rank: float
    fits: bool


def memory_table(profile: Any, gpus: int | None = None, gpu_gb: float = 80.0) -> dict[str, Any]:
    """Per-GPU GB for ZeRO-0 / ZeRO-2 / ZeRO-3 / ZeRO-2 + optimizer offload."""
    n = gpus or profile.train.ranks
    llm_c, enc_c = backbone_config(profile.models.llm), backbone_config(profile.models.whisper)
    p_llm, p_enc = llm_params(llm_c), encoder_params(enc_c)
    p_train = connector_params(profile.model, enc_c["d_model"], llm_c["hidden_size"]) + lora_params(profile.model, llm_c)
    b, s, h = profile.train.batch_size, profile.train.max_length, llm_c["hidden_size"]
    # LLM activations kept for backward (bf16, no recomputation): 34*s*b*h bytes per layer
    # (Korthikanti et al. 2022, without the attention-score term that SDPA does not store); an upper
    # bound here since frozen weights need no saved matmul inputs for weight gradients.
    act_llm = 34 * s * b * h * llm_c["num_hidden_layers"]
    # Q-Former: cross-attention keys/values over 1500 frames for every tapped layer and Q-Former layer.
    frames, d, taps = enc_c.get("max_source_positions", 1500), enc_c["d_model"], len(profile.model.encoder_layers)
    act_q = 2 * 2 * taps * b * frames * d * profile.model.qformer_layers + 2 * taps * b * frames * d
    logits = b * s * llm_c["vocab_size"] * 6 // 2  # response positions (about half) in bf16 + fp32 copy
    acts = (act_llm + act_q + logits) / GB
    rows = []
    for mode, stage, offload in (("ZeRO-0 (DDP-like)", 0, False), ("ZeRO-2", 2, False), ("ZeRO-3", 3, False),
                                 ("ZeRO-2 + CPU offload", 2, True)):
        part = n if stage >= 3 else 1
        frozen = 2 * p_llm / part / GB
        params = 4 * p_train / part / GB
        grads = (4 * p_train / (n if stage >= 2 else 1) / GB) if not offload else 0.0
        optim = 0.0 if offload else 8 * p_train / (n if stage >= 1 else 1) / GB
        buckets = 2 * 4 * min(BUCKET, p_train) / GB if stage >= 1 else 4 * min(BUCKET, p_train) / GB
        enc = 4 * p_enc / GB
        total = frozen + enc + params + grads + optim + buckets + acts + 2.0  # + ~2 GB CUDA context/allocator
        cpu = (4 + 8) * p_train / n / GB if offload else 0.0  # fp32 grad partition + Adam moments per rank
        rows.append(Row(mode, frozen, enc, params, grads, optim, buckets, acts, total, cpu, total <= gpu_gb))
    return {"gpus": n, "gpu_gb": gpu_gb, "params": {"llm": p_llm, "whisper_encoder": p_enc, "trainable": p_train},
            "batch_per_gpu": b, "max_length": s, "rows": [r.__dict__ for r in rows]}


def format_table(t: dict[str, Any]) -> str:
    p = t["params"]
    head = (f"DeSTA memory per GPU ({t['gpus']} x {t['gpu_gb']:.0f} GB; LLM {p['llm'] / 1e9:.2f} B frozen bf16, "
            f"Whisper encoder {p['whisper_encoder'] / 1e9:.2f} B frozen fp32, trainable {p['trainable'] / 1e6:.1f} M fp32; "
            f"batch {t['batch_per_gpu']} x {t['max_length']} tokens)")
    cols = ["mode", "frozen_llm", "encoder", "trainable", "grads", "optimizer", "buckets", "activations", "total", "cpu_per_rank", "fits"]
    lines = [head, " | ".join(f"{c:>20}" if c == "mode" else f"{c:>11}" for c in cols)]
    for r in t["rows"]:
        lines.append(" | ".join(f"{r[c]:>20}" if c == "mode" else f"{r[c]!s:>11}" if c == "fits" else f"{r[c]:>11.2f}" for c in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    from components.config import load_params

    print(format_table(memory_table(load_params().profiles["paper"])))
