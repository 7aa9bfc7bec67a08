"""What a DeSTA model is built from: the spec (two frozen backbones + the connector's shape), its
export file names, and loading the backbones from local directories (offline-safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from components.config import ModelConfig

FORMAT = "desta-pipeline/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class DestaSpec:
    """What to build: the two frozen backbones (hub ids or directories) and the connector's shape."""

    whisper: str
    llm: str
    model: ModelConfig

    @classmethod
    def from_profile(cls, profile: Any) -> DestaSpec:
        return cls(profile.models.whisper, profile.models.llm, profile.model)

    def to_dict(self) -> dict[str, Any]:
        return {"whisper": self.whisper, "llm": self.llm, "model": self.model.model_dump(mode="json")}


class LossOutput(NamedTuple):  # a named tuple: DeepSpeed ZeRO-3 hooks see its tensors
    loss: torch.Tensor  # mean negative log-likelihood over the response tokens
    tokens: int  # response tokens scored
    row_logprob: torch.Tensor  # (B,) summed log-probability of each row's response


def load_backbones(whisper: str, llm: str, precision: str = "bf16", with_decoder: bool = True):
    """(WhisperForConditionalGeneration, causal LM, LLM tokenizer, Whisper processor); offline-safe.

    Without the decoder (training), Whisper's decoder and output projection are dropped.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperForConditionalGeneration, WhisperProcessor

    w = WhisperForConditionalGeneration.from_pretrained(whisper, dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(whisper)
    if not with_decoder:
        del w.model.decoder, w.proj_out
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype).eval()
    tok = AutoTokenizer.from_pretrained(llm)
    return w, lm, tok, processor
