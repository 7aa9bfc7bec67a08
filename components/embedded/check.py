"""Quick functional checks of the prepared models: Whisper transcribes, the LLM answers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from components.audio import load_audio


def transcribe(model_dir: Path, wavs: Sequence[Path], batch_size: int = 8) -> list[str]:
    """Greedy transcripts of `wavs` with the HF Whisper in `model_dir`."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    out: list[str] = []
    for i in range(0, len(wavs), batch_size):
        audio = [load_audio(p, 16000).numpy() for p in wavs[i : i + batch_size]]
        feats = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(feats, do_sample=False, num_beams=1)
        out += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return out


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
