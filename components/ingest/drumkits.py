"""Adapter: Debian's `hydrogen-drumkits`, real one-shot drum recordings with their category known by
construction. Each kit's drumkit.xml names its instruments and their sample files (velocity layers: a
soft and a hard hit are separate recordings); the instrument's name maps to a sound category by keyword
(kick drum, snare drum, hi-hat, ...). Names that match none (numbered pads, effects) are left out.

The kit is the clip's `speaker`: the held-out split keeps whole kits (another drum set, other rooms and
microphones) out of training, as it keeps voices out. Licences differ per kit (GPL-2+, CC-BY-SA-3.0,
CC-BY-3.0, CC0): /usr/share/doc/hydrogen-drumkits/copyright.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from itertools import chain, zip_longest
from pathlib import Path

from components.ingest.candidates import Candidate

DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")
DATASET = "drumkits"
# First match wins: "Ride Crash" is a ride, "Tom Rim" a tom, "Snare Rim" a snare.
CATEGORIES = (
    ("hand clap", r"clap"),
    ("cowbell", r"cow ?bell"),
    ("tambourine", r"tambourin"),
    ("shaker", r"shaker|maraca|cabasa"),
    ("hi-hat", r"\bhh\b|hi-?hat|hihat|\bhat\b"),
    ("ride cymbal", r"ride"),
    ("crash cymbal", r"crash|splash|china"),
    ("snare drum", r"snare"),
    ("tom-tom", r"\btom"),
    ("kick drum", r"kick|bass ?drum"),
    ("rimshot", r"\brim|stick"),
)


MIN_KITS = 2  # a category with one kit cannot be both heard in training and held out


def category(instrument: str) -> str | None:
    """The sound category of a kit instrument's name, or None when no keyword matches."""
    return next((name for name, pattern in CATEGORIES if re.search(pattern, instrument, re.I)), None)


def _samples(kit_xml: Path) -> list[tuple[str, str, Path]]:
    """(category, instrument name, sample file) of every named instrument's layers that exist; a file that
    two instruments share counts once, and not at all when their categories differ."""
    found: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for inst in ET.parse(kit_xml).getroot().iter():
        if inst.tag.rpartition("}")[2] != "instrument":
            continue
        name = next((e.text or "" for e in inst if e.tag.rpartition("}")[2] == "name"), "").strip()
        cat = category(name)
        if cat is None:
            continue
        for e in inst.iter():
            if e.tag.rpartition("}")[2] == "filename" and e.text and (kit_xml.parent / e.text).is_file():
                found[kit_xml.parent / e.text].append((cat, name))
    return [(uses[0][0], uses[0][1], path) for path, uses in found.items() if len({c for c, _ in uses}) == 1]


def prepare_drumkits(root: Path = DRUMKITS, per_category: int = 40) -> list[Candidate]:
    """One sound candidate per sample of a named instrument, at most `per_category` per category, taken
    in turn from each kit (so no kit fills a category), in a fixed order; categories of fewer than
    MIN_KITS kits are left out."""
    kits = sorted(root.glob("*/drumkit.xml"))
    if not kits:
        raise ValueError(f"no drum kits under {root}: install the Debian package hydrogen-drumkits")
    by_cat: dict[str, list[list[tuple[str, str, Path]]]] = defaultdict(list)
    for kit_xml in kits:
        per_kit: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)
        for cat, name, path in _samples(kit_xml):
            per_kit[cat].append((kit_xml.parent.name, name, path))
        for cat, samples in per_kit.items():
            by_cat[cat].append(sorted(samples, key=lambda s: s[2].name))
    out = []
    for cat in sorted(c for c, per_kit in by_cat.items() if len(per_kit) >= MIN_KITS):
        turns = [s for s in chain.from_iterable(zip_longest(*by_cat[cat])) if s is not None]
        for kit, name, path in turns[:per_category]:
            meta = {"kind": "sound", "category": cat, "speaker": f"drumkit-{kit}", "instrument": name}
            out.append(Candidate(str(path), DATASET, path=path, metadata=meta))
    return out
