"""Fixtures for the label tests: the embedded LLM (real), one shared hf backend, small settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ModelsConfig


@pytest.fixture(scope="session")
def llm_dir(embedded_models: dict[str, Path]) -> Path:
    return embedded_models["smollm2-135m-instruct"]


@pytest.fixture(scope="session")
def models(llm_dir: Path) -> ModelsConfig:
    return ModelsConfig(whisper="unused", llm=str(llm_dir))


@pytest.fixture(scope="session")
def hf_backend(llm_dir: Path):
    from components.label.backends.hf import HFBackend

    backend = HFBackend(llm_dir, precision="bf16", threads=1)
    yield backend
    backend.close()
