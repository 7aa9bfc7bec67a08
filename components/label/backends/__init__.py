"""Generation backends: `hf` (embedded default), `vllm` (GPU, imported only when chosen), `openai` (HTTP)."""

from __future__ import annotations

from components.config import LabelConfig
from components.label.backends.base import Backend, Completion, Request
from components.precision import resolve as resolve_precision

__all__ = ["Backend", "Completion", "Request", "engine_tag", "make_backend"]


def engine_tag(cfg: LabelConfig) -> str:
    """The backend's numerics tag (in every cache key), known without loading the backend."""
    if cfg.backend == "openai":
        return "openai"
    device = "cuda" if cfg.backend == "vllm" else "cpu"  # vllm runs on GPUs; hf here on the CPU
    return f"{cfg.backend}/{resolve_precision(cfg.precision, device)}"


def make_backend(cfg: LabelConfig, model: str, model_dir: str | None) -> Backend:
    """Build the backend named in params; heavy imports happen only here."""
    if cfg.backend == "hf":
        from components.label.backends.hf import HFBackend

        if model_dir is None:
            raise FileNotFoundError(f"the hf backend needs a local copy of {model!r}")
        return HFBackend(model_dir, precision=cfg.precision, threads=cfg.threads)
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
