"""What every generation backend takes and returns."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

# Where each backend runs: its precision is resolved for that device (components/precision.py).
DEVICES = {"hf": "cpu", "vllm": "cuda"}


def engine_tag(backend: str, precision: str | None = None) -> str:
    """The numerics a backend generates with, in every cache key: `hf/bf16`, `vllm/fp32`, or the bare
    name of a backend whose numerics are a server's (`openai`, precision None)."""
    return backend if precision is None else f"{backend}/{precision}"


def hf_engine(precision: str) -> str:
    """The hf backend's tag. `shared-head`: the system turn's KV state is computed apart from each row's
    own tokens (same text as `generate` in fp32; bf16 rounds differently), so caches from `generate` regenerate."""
    return engine_tag("hf", f"{precision}/shared-head")


@dataclass(frozen=True)
class Request:
    key: str  # the cache key; also the stable tie-breaker when batches are planned
    messages: tuple[dict[str, str], ...]
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None  # per-request sampling seed (independent of batch composition)
    shared: str = ""  # the last message's opening that other requests share (a clip's description): run once


@dataclass(frozen=True)
class Completion:
    text: str
    finish: str  # "stop" (end of turn) or "length" (hit max_new_tokens)
    prompt_tokens: int
    completion_tokens: int


def completion(tokens: list[int], limit: int, prompt_tokens: int, eos_ids: Collection[int],
               decode: Callable[[list[int]], str]) -> Completion:
    """A local engine's generated ids as a Completion: cut to the row's own limit, stopped at the first end
    token (counted, as a server counts it), decoded without special tokens."""
    tokens = tokens[:limit]  # a row with a smaller limit than its batch's is cut to its own
    stop = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
    body = tokens if stop is None else tokens[:stop]
    return Completion(decode(body).strip(), "stop" if stop is not None else "length", int(prompt_tokens),
                      len(body) + (stop is not None))


def eos_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    """The ids that end an answer: the generation config's (one or a list), else the tokenizer's."""
    eos = generation_config.eos_token_id if generation_config.eos_token_id is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


class Backend(Protocol):
    engine: str  # e.g. "hf/bf16": numerics that can change the text, so part of the cache key
    stats: dict[str, int]  # backend counters for the report (e.g. HTTP retries)

    def length(self, request: Request) -> int:
        """The length batches are bucketed by (the prompt's, or the part a backend runs once per group)."""
        ...

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Completions in the order of `requests` (one batch)."""
        ...

    def close(self) -> None: ...
