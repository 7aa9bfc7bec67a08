"""Turn `--source` arguments into candidates, one adapter per source kind."""

from __future__ import annotations

from pathlib import Path

from components.ingest.aqa import prepare_aqa_jsonl
from components.ingest.candidates import Candidate
from components.ingest.directory import prepare_directory
from components.ingest.embedded import EspeakSettings, default_cache, embedded_candidates
from components.ingest.lhotse_source import is_lhotse_manifest, prepare_lhotse

EMBEDDED = "embedded"


def source_kind(source: str) -> str:
    """'embedded', 'directory', 'lhotse' or 'aqa'; raises ValueError for anything else."""
    if source == EMBEDDED:
        return "embedded"
    path = Path(source)
    if path.is_dir():
        return "directory"
    if is_lhotse_manifest(path):
        return "lhotse"
    if path.is_file() and path.name.endswith(".jsonl"):
        return "aqa"
    if not path.exists():
        raise ValueError(f"source not found: {source}")
    raise ValueError(
        f"unknown source kind: {source} (expected 'embedded', a directory, a lhotse *recordings*.jsonl[.gz] "
        "manifest, or a DeSTA-AQA5M .jsonl)"
    )


def resolve_sources(
    sources: list[str], data_root: Path | None, espeak: EspeakSettings, cache: Path | None = None
) -> list[Candidate]:
    """All candidates of all sources, in the order given."""
    out: list[Candidate] = []
    for source in sources:
        kind = source_kind(source)
        if kind == "embedded":
            out += embedded_candidates(espeak, cache or default_cache())
        elif kind == "directory":
            out += prepare_directory(Path(source))
        elif kind == "lhotse":
            out += prepare_lhotse(Path(source), data_root)
        else:
            out += prepare_aqa_jsonl(Path(source), data_root or Path(source).parent)
    return out
