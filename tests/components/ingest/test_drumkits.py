"""The `drumkits` source (components/ingest/drumkits.py) on Debian's real hydrogen-drumkits: categories
from the kits' own instrument names, spread over kits, through a real ingest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from components.ingest.decode import Limits
from components.ingest.drumkits import DRUMKITS, MIN_KITS, category, prepare_drumkits
from components.ingest.run import MANIFEST, ingest
from components.ingest.sources import Sources, source_kind
from components.ingest.embedded import EspeakSettings
from components.records import read_jsonl
from components.audio import read_audio_ref


@pytest.mark.parametrize("name, cat", [
    ("Kick", "kick drum"), ("BassDrum", "kick drum"), ("Snare Jazz", "snare drum"), ("Closed HH", "hi-hat"),
    ("VariBreaks Hat 1 Op", "hi-hat"), ("Ride Rock", "ride cymbal"), ("ride-crash20inch", "ride cymbal"),
    ("Zildjian Splash", "crash cymbal"), ("Tom Low", "tom-tom"), ("Hand Clap", "hand clap"),
    ("Stick", "rimshot"), ("Cowbell", "cowbell"), ("23", None), ("Zap 1", None), ("Whistle", None),
])
def test_category_from_the_instrument_name(name: str, cat: str | None) -> None:
    assert category(name) == cat


def test_the_set_has_ten_categories_over_many_kits() -> None:
    cands = prepare_drumkits(per_category=40)
    assert cands == prepare_drumkits(per_category=40)  # a fixed order
    cats = Counter(c.metadata["category"] for c in cands)
    assert len(cands) >= 300 and len(cats) >= 10 and max(cats.values()) == 40
    for cat in cats:
        kits = Counter(c.metadata["speaker"] for c in cands if c.metadata["category"] == cat)
        assert len(kits) >= MIN_KITS  # a category can be held out and still heard in training
        if cats[cat] == 40:
            assert max(kits.values()) <= 40 // MIN_KITS  # taken in turn from each kit, not the first kit's all
    assert all(c.path.is_file() and c.path.is_relative_to(DRUMKITS) and c.metadata["kind"] == "sound" for c in cands)
    assert len({c.source for c in cands}) == len(cands)


def test_ingest_decodes_every_format_to_16k_mono(tmp_path: Path) -> None:
    """flac, wav and aiff samples, stereo 44.1/48 kHz, through the real ingest via the source name."""
    assert source_kind("drumkits") == "drumkits"
    cands = list(Sources(["drumkits"], None, EspeakSettings(espeak_clips=0), drum_clips_per_category=2))
    assert {c.path.suffix for c in prepare_drumkits(per_category=40)} >= {".flac", ".wav", ".aiff"}
    report = ingest(cands, tmp_path / "out", Limits(0.05, 30.0, -60.0), 64 << 20, workers=2, show_progress=False)
    rows = list(read_jsonl(tmp_path / "out" / MANIFEST))
    assert report.accepted == len(rows) >= len(cands) - 2  # a near-silent sample may be rejected
    assert {r["metadata"]["category"] for r in rows} == {c.metadata["category"] for c in cands}
    for r in rows[:5]:
        data, sr = read_audio_ref(tmp_path, f"out/{r['shard']}/{r['id']}.flac")
        assert sr == 16000 and data.ndim == 1 and len(data) > 0
