"""transformers backend (the embedded default): each shared part of the prompts run once, in batches.

A labelling prompt is the system turn (the labelling system prompt: 112 of ~195 tokens for SmolLM2,
the same for every request), the clip's description (shared by the instructions asked about that clip:
`Request.shared`) and the instruction. The system turn's KV state is computed once per run, each
description once per batch, then each row's own tokens, into a KV cache written in place
(components/model/decode.py: `run_head`, `extend`, `greedy`). In fp32 the text is transformers
`generate`'s on the whole prompts, token for token (tests/components/label/test_hf.py).

On AMX CPUs bf16 matmuls run ~9x faster than fp32 (AVX2-only CPUs emulate bf16, so fp32 runs there:
components/precision.py). "bf16" here means autocast over fp32 weights (a bf16 copy of the whole model
is slower: its norms and element-wise ops fall onto slow bf16 kernels); the linear layers' weights are
stored as the bf16 autocast would cast them to on every call, which gives the same numbers without
the per-call cast (42 % of a decode step's time, measured). Sampling (retries) uses a per-row seeded
Gumbel-max draw, so a row's sample does not depend on which rows share its batch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from components.label.backends.base import Completion, Request, completion, eos_ids, hf_engine
from components.model import decode
from components.precision import resolve as resolve_precision


class RowSampler:
    """Per-row temperature/top-p and seeded Gumbel noise on a batch's scores; greedy rows untouched.

    Adding Gumbel noise to tempered, top-p-masked scores and taking the arg-max is an exact sample,
    so decoding stays an arg-max while each row samples from its own generator.
    """

    def __init__(self, requests: list[Request]) -> None:
        self.rows = {i: (r.temperature, r.top_p, torch.Generator().manual_seed(r.seed or 0))
                     for i, r in enumerate(requests) if r.temperature > 0}

    def __call__(self, scores: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """`scores[j]` belongs to request `rows[j]`."""
        if not self.rows:
            return scores
        scores = scores.float().clone()
        for j, i in enumerate(rows):
            if i not in self.rows:
                continue
            temp, top_p, gen = self.rows[i]
            s = scores[j] / temp
            if top_p < 1.0:
                order = torch.argsort(s, descending=True)
                probs = torch.softmax(s[order], dim=-1)
                drop = torch.cumsum(probs, dim=-1) - probs > top_p  # keep the smallest set reaching top_p
                s[order[drop]] = float("-inf")
            u = torch.rand(s.shape, generator=gen).clamp_(1e-10, 1.0 - 1e-7)
            scores[j] = s - torch.log(-torch.log(u))
        return scores


def store_linears_bf16(model: torch.nn.Module) -> None:
    """Keep each linear layer's weight as bf16, the value bf16 autocast casts it to on every call (the
    tied output layer gets its own copy; the embedding stays fp32)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight = torch.nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)


class HFBackend:
    """A causal LM from a local directory, generating one padded batch per call."""

    def __init__(self, model_dir: str | Path, precision: str = "bf16", threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        precision = resolve_precision(precision)
        self.engine = hf_engine(precision)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt directly
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, not {precision!r}")
        self.autocast = precision == "bf16"
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        if self.autocast:
            store_linears_bf16(self.model)
        gen_cfg = self.model.generation_config
        self.eos_ids = eos_ids(gen_cfg, self.tokenizer)
        self.threads = threads
        self.stats = {"shared_head_tokens": 0, "shared_openings": 0, "batches_without_head": 0}
        self._heads: dict[tuple[int, ...], decode.Context] = {}  # system-turn tokens -> their KV state
        self._lock = threading.Lock()  # one generate at a time: threads share the cores anyway

    def prompt(self, request: Request) -> str:
        return self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _cut(self, request: Request, text: str, prompt: list[int]) -> int:
        """Where the request's shared opening ends in its prompt's tokens (0: none on a token boundary)."""
        at = text.find(request.shared) if request.shared else -1
        if at < 0:
            return 0
        opening = self._ids(text[: at + len(request.shared)])
        return len(opening) if len(opening) < len(prompt) and prompt[: len(opening)] == opening else 0

    def length(self, request: Request) -> int:
        """The shared opening's length when there is one (the part run once per group), else the prompt's."""
        text = self.prompt(request)
        prompt = self._ids(text)
        return self._cut(request, text, prompt) or len(prompt)

    def _head(self, requests: list[Request], prompts: list[list[int]]) -> list[int]:
        """The tokens of the system turn every prompt opens with, or [] when the batch shares none."""
        first = requests[0].messages[0]
        if first.get("role") != "system" or any(r.messages[0] != first for r in requests):
            return []
        head = self._ids(self.tokenizer.apply_chat_template([dict(first)], tokenize=False))
        return head if all(len(p) > len(head) and p[: len(head)] == head for p in prompts) else []

    def _prefill(self, requests: list[Request], prompts: list[list[int]], shared: list[int],
                 room: int) -> decode.Context:
        """The batch's contexts: the system turn once (kept across batches), each shared opening (a clip's
        description, ending at `shared[i]`) once for the rows asking about it, then each row's own tokens."""
        head, pad = self._head(requests, prompts), self.tokenizer.pad_token_id
        self.stats["batches_without_head"] += not head
        if not head:
            return decode.extend(self.model, None, [], prompts, pad, room)
        if tuple(head) not in self._heads:
            self._heads[tuple(head)] = decode.run_head(self.model, head)
        base, rows, cuts = self._heads[tuple(head)], [0] * len(prompts), [len(head)] * len(prompts)
        if all(c > len(head) for c in shared):
            groups = list(dict.fromkeys(tuple(p[:c]) for p, c in zip(prompts, shared)))
            base = decode.extend(self.model, base, [0] * len(groups), [g[len(head):] for g in groups], pad)
            rows, cuts = [groups.index(tuple(p[:c])) for p, c in zip(prompts, shared)], shared
            self.stats["shared_openings"] += len(groups)
        self.stats["shared_head_tokens"] = len(head)
        return decode.extend(self.model, base, rows, [p[c:] for p, c in zip(prompts, cuts)], pad, room)

    @torch.inference_mode()
    def generate(self, requests: list[Request]) -> list[Completion]:
        if not requests:
            return []
        max_new = max(r.max_new_tokens for r in requests)
        texts = [self.prompt(r) for r in requests]
        prompts = [self._ids(t) for t in texts]
        shared = [self._cut(r, t, p) for r, t, p in zip(requests, texts, prompts)]
        sampler = RowSampler(requests)
        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            prev = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                ctx = self._prefill(requests, prompts, shared, max_new)
                new = decode.greedy(self.model, ctx, max_new, sorted(self.eos_ids), self.tokenizer.pad_token_id,
                                    compact=not sampler.rows, warp=sampler if sampler.rows else None)
            finally:
                torch.set_num_threads(prev)
        return [completion(toks, r.max_new_tokens, len(p), self.eos_ids, self._decode)
                for toks, r, p in zip(new, requests, prompts)]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def close(self) -> None:
        self.model = None
