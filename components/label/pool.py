"""The instruction pool: a versioned data file, and a deterministic draw per clip."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components.label.attributes import SAID_KIND

DEFAULT_POOL = Path(__file__).parent / "data" / "instructions.jsonl"
AudioKind = Literal["any", "speech", "sound", "music"]
AUDIO_KINDS = ("any", "speech", "sound", "music")


@dataclass(frozen=True)
class Instruction:
    id: str
    kind: str
    audio: AudioKind
    requires: str | None  # a seed-description field (e.g. "Emotion") the answer depends on
    text: str

    @property
    def asks(self) -> str | None:
        """What an answer must state: the seed field asked about, or SAID_KIND (the words spoken)."""
        return SAID_KIND if self.kind == SAID_KIND else self.requires


@dataclass(frozen=True)
class Pool:
    instructions: tuple[Instruction, ...]
    digest: str  # sha256 of the file bytes: recorded in provenance
    path: str


def load_pool(path: Path | None = None) -> Pool:
    """Read and check a JSONL pool (id, kind, audio, requires, text per line)."""
    path = path or DEFAULT_POOL
    raw = path.read_bytes()
    items: list[Instruction] = []
    for n, line in enumerate(raw.decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            items.append(Instruction(d["id"], d["kind"], d.get("audio", "any"), d.get("requires"), d["text"].strip()))
        except (ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"{path}:{n}: bad instruction row ({err})") from None
        if items[-1].audio not in AUDIO_KINDS or not items[-1].text:
            raise ValueError(f"{path}:{n}: audio must be {'|'.join(AUDIO_KINDS)} and text non-empty")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate instruction ids")
    if not items:
        raise ValueError(f"{path}: empty instruction pool")
    return Pool(tuple(items), hashlib.sha256(raw).hexdigest(), str(path))


def restrict(pool: Pool, kinds: list[str] | None) -> Pool:
    """The pool cut to the given instruction kinds (None = all); an unknown kind is an error."""
    if not kinds:
        return pool
    known = {i.kind for i in pool.instructions}
    if unknown := sorted(set(kinds) - known):
        raise ValueError(f"label.kinds: {unknown} not in the pool {pool.path} (kinds: {sorted(known)})")
    return Pool(tuple(i for i in pool.instructions if i.kind in kinds), pool.digest, pool.path)


def clip_audio_kind(row: dict) -> str:
    """'speech', 'sound' or 'music': the seeds stage's `kind` if given, else whether there is a transcript."""
    kind = row.get("kind")
    if kind in AUDIO_KINDS[1:]:
        return kind
    return "speech" if row.get("transcript") else "sound"


def fitting(pool: Pool, row: dict) -> list[Instruction]:
    """The instructions that fit this clip: right audio kind, required field present (maybe none)."""
    kind = clip_audio_kind(row)
    desc = row["seed_description"]
    return [i for i in pool.instructions
            if i.audio in ("any", kind) and (i.requires is None or re.search(rf"\b{re.escape(i.requires)}\s*:", desc))]


def eligible(pool: Pool, row: dict) -> list[Instruction]:
    """Instructions that make sense for this clip (`fitting`); when none fits, the generic ones, else all."""
    return fitting(pool, row) or [i for i in pool.instructions if i.audio == "any"] or list(pool.instructions)


def _rank(seed: int, row: dict, instruction: Instruction) -> str:
    return hashlib.sha256(f"{seed}\x00{row['id']}\x00{instruction.id}".encode()).hexdigest()


def draw(pool: Pool, row: dict, seed: int, k: int) -> list[Instruction]:
    """k distinct instructions for a clip, a pure function of (clip id, seed, pool).

    Ranking by a per-(seed, clip, instruction id) hash keeps draws stable when the pool grows:
    a new instruction only changes the clips for which it ranks first.
    """
    ranked = sorted(eligible(pool, row), key=lambda i: _rank(seed, row, i))
    # More draws than eligible instructions: cycle, so every row still gets one.
    return [ranked[j % len(ranked)] for j in range(k)]


def draw_more(pool: Pool, row: dict, seed: int, more: dict[str, int], drawn: list[Instruction]) -> list[Instruction]:
    """`label.more_draws`: `more[kind]` further instructions of each kind that fits the clip, not in `drawn`,
    ranked as `draw` ranks them. `drawn` never changes, so its answers stay cached."""
    ranked = sorted(fitting(pool, row), key=lambda i: _rank(seed, row, i))
    return [i for kind, n in sorted(more.items()) for i in [i for i in ranked if i.kind == kind and i not in drawn][:n]]
