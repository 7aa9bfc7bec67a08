"""CTranslate2 backend: batch generation on an inference engine made for it, on the CPU.

The labelling requests share their chat-template head (the labelling system prompt, ~134 of ~195
prompt tokens for SmolLM2): it is passed as CTranslate2's `static_prompt`, whose model state is
computed once and reused by every later batch, so prefill costs only each request's own tokens.
Greedy rows of a batch go through one `generate_batch`. Sampled rows (retries) go to the hf backend in
fp32, loaded only when one comes: CTranslate2 cannot seed a request (its sampler's RNG lives in each
worker thread, seeded once when the thread starts), and a retry's text must depend on its own seed
only, not on the rows beside it or on what ran before (resume after a kill equals an uninterrupted run).

`compute_type` float32 gives the same greedy text as the `hf` backend in fp32 (tests/components/label);
int8 quantises the weights at load time and changes the text, so it needs the yield to hold.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from components.label.backends.base import Completion, Request, completion, engine_tag, eos_ids

COMPUTE_TYPES = ("float32", "int8", "int8_float32")


def ct2_engine(model_dir: str | Path, compute_type: str) -> str:
    """`ct2/<compute type>/<digest of the converted model>`: the converted weights are part of the cache key."""
    from components.embedded.ct2_llm import convert_ct2_llm

    return _engine(convert_ct2_llm(Path(model_dir)), compute_type)


def _engine(converted: Path, compute_type: str) -> str:
    from components.modeldir import weights_digest

    return engine_tag("ct2", f"{compute_type}/{weights_digest(converted).removeprefix('sha256:')[:16]}")


class CT2Backend:
    """A causal LM converted to CTranslate2 (once, cached), with the HF tokenizer and chat template."""

    def __init__(self, model_dir: str | Path, compute_type: str = "float32", threads: int | None = None) -> None:
        import ctranslate2
        from transformers import AutoTokenizer, GenerationConfig

        from components.embedded.ct2_llm import convert_ct2_llm

        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"label.compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}")
        converted = convert_ct2_llm(Path(model_dir))
        self.engine = _engine(converted, compute_type)
        self.stats: dict[str, int] = {"static_prompt_tokens": 0, "sampled_on_hf_fp32": 0}
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.generator = ctranslate2.Generator(str(converted), device="cpu", compute_type=compute_type,
                                               intra_threads=threads or 0)
        self.eos_ids = sorted(eos_ids(GenerationConfig.from_pretrained(str(model_dir)), self.tokenizer))
        self._static: list[str] | None = None  # the longest head every prompt so far shares
        self._model_dir, self._threads = Path(model_dir), threads
        self._sampler: Any = None  # the hf backend for sampled rows, loaded on first use
        self._lock = threading.Lock()

    def _tokens(self, request: Request) -> list[str]:
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer.convert_ids_to_tokens(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def length(self, request: Request) -> int:
        return len(self._tokens(request))

    def _shared_head(self, prompts: list[list[str]]) -> list[str]:
        """The static prompt: the common head of every prompt seen, leaving each prompt one token of its own."""
        head = self._static if self._static is not None else prompts[0]
        for p in prompts:
            n = 0
            while n < min(len(head), len(p) - 1) and head[n] == p[n]:
                n += 1
            head = head[:n]
        self._static = head
        self.stats["static_prompt_tokens"] = len(head)
        return head

    def _generate(self, prompts: list[list[str]], max_new: int) -> list[list[int]]:
        head = self._shared_head(prompts)
        results = self.generator.generate_batch(
            [p[len(head):] for p in prompts], static_prompt=head or None, max_length=max_new, beam_size=1,
            sampling_topk=1, include_prompt_in_result=False, end_token=self.eos_ids, return_end_token=True)
        return [r.sequences_ids[0] for r in results]

    def generate(self, requests: list[Request]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.temperature <= 0]
        sampled = [i for i, r in enumerate(requests) if r.temperature > 0]
        with self._lock:
            if greedy:
                prompts = [self._tokens(requests[i]) for i in greedy]
                ids = self._generate(prompts, max(requests[i].max_new_tokens for i in greedy))
                for i, toks, p in zip(greedy, ids, prompts):
                    out[i] = completion(toks, requests[i].max_new_tokens, len(p), self.eos_ids, self._decode)
            if sampled:
                for i, c in zip(sampled, self._sampling_backend().generate([requests[i] for i in sampled])):
                    out[i] = c
                self.stats["sampled_on_hf_fp32"] += len(sampled)
        return [c for c in out if c is not None]

    def _sampling_backend(self) -> Any:
        if self._sampler is None:
            from components.label.backends.hf import HFBackend

            self._sampler = HFBackend(self._model_dir, precision="fp32", threads=self._threads)
        return self._sampler

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def close(self) -> None:
        self.generator = None
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
