"""Generation backends: `hf` (embedded default), `ct2` (CTranslate2, CPU), `vllm` (GPU, imported only when
chosen), `openai` (HTTP)."""

from __future__ import annotations

from components.config import LabelConfig
from components.label.backends.base import DEVICES, Backend, Completion, Request, engine_tag, hf_engine
from components.precision import resolve as resolve_precision

__all__ = ["Backend", "Completion", "Request", "expected_engine", "make_backend"]


def expected_engine(cfg: LabelConfig, model_dir: str | None = None) -> str:
    """The engine tag the configured backend will report, known without loading it (a run that is all
    cache hits never loads a model); the backend checks it once loaded (LabelJob.backend)."""
    if cfg.backend == "ct2":
        from components.label.backends.ct2 import ct2_engine

        if model_dir is None:
            raise FileNotFoundError("the ct2 backend needs a local copy of the generator")
        return ct2_engine(model_dir, cfg.compute_type)
    if cfg.backend not in DEVICES:  # a server: its numerics are not ours to resolve
        return engine_tag(cfg.backend)
    precision = resolve_precision(cfg.precision, DEVICES[cfg.backend])
    return hf_engine(precision) if cfg.backend == "hf" else engine_tag(cfg.backend, precision)


def make_backend(cfg: LabelConfig, model: str, model_dir: str | None) -> Backend:
    """Build the backend named in params; heavy imports happen only here."""
    if cfg.backend == "hf":
        from components.label.backends.hf import HFBackend

        if model_dir is None:
            raise FileNotFoundError(f"the hf backend needs a local copy of {model!r}")
        return HFBackend(model_dir, precision=cfg.precision, threads=cfg.threads)
    if cfg.backend == "ct2":
        from components.label.backends.ct2 import CT2Backend

        if model_dir is None:
            raise FileNotFoundError(f"the ct2 backend needs a local copy of {model!r}")
        return CT2Backend(model_dir, compute_type=cfg.compute_type, threads=cfg.threads)
    if cfg.backend == "vllm":
        from components.label.backends.vllm import VLLMBackend

        return VLLMBackend(model_dir or model, precision=cfg.precision, seed=cfg.seed)
    if cfg.backend == "openai":
        from components.label.backends.openai_http import OpenAIBackend

        if not cfg.openai_base_url:
            raise ValueError("label.backend is 'openai' but label.openai_base_url is not set")
        return OpenAIBackend(cfg.openai_base_url, model, concurrency=cfg.concurrency, timeout=cfg.request_timeout,
                             max_attempts=cfg.request_attempts)
    raise ValueError(f"unknown label backend {cfg.backend!r}")
