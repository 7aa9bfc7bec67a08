"""Turn `--source` arguments into candidates, one adapter per source kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from components.ingest.aqa import iter_aqa_jsonl
from components.ingest.candidates import Candidate
from components.ingest.directory import iter_directory
from components.ingest.drumkits import DATASET as DRUMKITS
from components.ingest.drumkits import prepare_drumkits
from components.ingest.embedded import EspeakSettings, default_cache, embedded_candidates
from components.ingest.lhotse_source import is_lhotse_manifest, prepare_lhotse
from components.ingest.music import DATASET as MUSIC
from components.ingest.music import MusicSettings, prepare_music

EMBEDDED = "embedded"


def source_kind(source: str) -> str:
    """'embedded', 'drumkits', 'music', 'directory', 'lhotse' or 'aqa'; raises ValueError for anything else."""
    if source in (EMBEDDED, DRUMKITS, MUSIC):
        return source
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
        f"unknown source kind: {source} (expected 'embedded', 'drumkits', 'music', a directory, a lhotse *recordings*.jsonl[.gz] "
        "manifest, or a DeSTA-AQA5M .jsonl)"
    )


class Sources:
    """The candidates of the configured sources, in the order given, read afresh on every iteration: ingest
    walks them twice (plan, then write) without holding them all (a 5M-row AQA file need not fit)."""

    def __init__(self, sources: list[str], data_root: Path | None, espeak: EspeakSettings,
                 cache: Path | None = None, drum_clips_per_category: int = 40,
                 music: MusicSettings = MusicSettings()) -> None:
        self.kinds = [(source, source_kind(source)) for source in sources]  # an unknown source fails here
        self.data_root, self.espeak, self.cache = data_root, espeak, cache
        self.drum_clips_per_category, self.music = drum_clips_per_category, music

    def __iter__(self) -> Iterator[Candidate]:
        for source, kind in self.kinds:
            if kind == "embedded":
                yield from embedded_candidates(self.espeak, self.cache or default_cache())
            elif kind == DRUMKITS:
                yield from prepare_drumkits(per_category=self.drum_clips_per_category)
            elif kind == MUSIC:
                yield from prepare_music(self.music, self.cache or default_cache())
            elif kind == "directory":
                yield from iter_directory(Path(source))
            elif kind == "lhotse":
                yield from prepare_lhotse(Path(source), self.data_root)
            else:
                yield from iter_aqa_jsonl(Path(source), self.data_root or Path(source).parent)
