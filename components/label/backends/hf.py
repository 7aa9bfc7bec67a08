"""transformers backend (the embedded default): left-padded batches, bf16 where it helps.

On AMX CPUs bf16 matmuls run ~9x faster than fp32 (AVX2-only CPUs emulate bf16, so fp32 runs there:
components/precision.py). Measured on SmolLM2-135M, 2 cores, AMX:
fp32 weights under bf16 autocast decode ~3x faster than plain fp32, while a bf16 *copy* of the
weights is slower than fp32 (non-matmul ops fall onto slow bf16 kernels) - so "bf16" here means
autocast. Batching is what lifts tokens/s further (batch 1 -> 32: ~8x). Sampling (retries) uses a per-row
seeded Gumbel-max draw, so a row's sample does not depend on which rows share its batch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from transformers import LogitsProcessor

from components.label.backends.base import Completion, Request, completion, engine_tag, eos_ids
from components.precision import resolve as resolve_precision


class RowSampler(LogitsProcessor):
    """Logits processor: per-row temperature/top-p and seeded Gumbel noise; greedy rows untouched.

    Adding Gumbel noise to tempered, top-p-masked logits and taking the argmax is an exact sample,
    so generate() can stay greedy while each row samples from its own generator.
    """

    def __init__(self, requests: list[Request]) -> None:
        self.rows = [
            (i, r.temperature, r.top_p, torch.Generator().manual_seed(r.seed or 0))
            for i, r in enumerate(requests) if r.temperature > 0
        ]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return scores
        scores = scores.float().clone()
        for i, temp, top_p, gen in self.rows:
            s = scores[i] / temp
            if top_p < 1.0:
                order = torch.argsort(s, descending=True)
                probs = torch.softmax(s[order], dim=-1)
                drop = torch.cumsum(probs, dim=-1) - probs > top_p  # keep the smallest set reaching top_p
                s[order[drop]] = float("-inf")
            u = torch.rand(s.shape, generator=gen).clamp_(1e-10, 1.0 - 1e-7)
            scores[i] = s - torch.log(-torch.log(u))
        return scores


class HFBackend:
    """A causal LM from a local directory, generating one padded batch per call."""

    def __init__(self, model_dir: str | Path, precision: str = "bf16", threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        precision = resolve_precision(precision)
        self.engine = engine_tag("hf", precision)
        self.stats: dict[str, int] = {}
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt directly
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, not {precision!r}")
        self.autocast = precision == "bf16"
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        gen_cfg = self.model.generation_config
        self.eos_ids = eos_ids(gen_cfg, self.tokenizer)
        self.threads = threads
        self._lock = threading.Lock()  # one generate at a time: threads share the cores anyway

    def prompt(self, request: Request) -> str:
        return self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)

    def length(self, request: Request) -> int:
        return len(self.tokenizer(self.prompt(request), add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def generate(self, requests: list[Request]) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList

        if not requests:
            return []
        max_new = max(r.max_new_tokens for r in requests)
        enc = self.tokenizer([self.prompt(r) for r in requests], return_tensors="pt", padding=True,
                             add_special_tokens=False)
        cfg = GenerationConfig(max_new_tokens=max_new, do_sample=False, eos_token_id=sorted(self.eos_ids),
                               pad_token_id=self.tokenizer.pad_token_id)
        with self._lock, torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            prev = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                out = self.model.generate(**enc, generation_config=cfg,
                                          logits_processor=LogitsProcessorList([RowSampler(requests)]))
            finally:
                torch.set_num_threads(prev)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        return [completion(toks, r.max_new_tokens, n, self.eos_ids, self._decode)
                for toks, r, n in zip(new, requests, prompt_lens)]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def close(self) -> None:
        self.model = None
