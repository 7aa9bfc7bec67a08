"""Quick functional check of the prepared LLM: greedy chat answers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def chat(model_dir: Path, prompts: Sequence[str], max_new_tokens: int = 32) -> list[str]:
    """Greedy chat answers of the HF causal LM in `model_dir`, one per user prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return [t.strip() for t in tok.batch_decode(ids[:, batch.input_ids.shape[1] :], skip_special_tokens=True)]
