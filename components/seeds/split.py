"""Held-out split with no leakage: clips that share a speaker or a transcript stay on one side.

Clips are linked when they share a speaker or (normalised) transcript; each connected group goes
wholly to `train` or `test`. Groups are taken for test in a seeded hash order until the test
fraction is reached, skipping any group too big for what is left (e.g. a one-speaker corpus).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

TRAIN, TEST = "train", "test"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _groups(rows: Iterable[dict[str, Any]]) -> tuple[int, dict[str, list[int]]]:
    """The number of rows, and each connected group's row positions named by its smallest clip id. Only
    the ids, the link keys and a parent per row are kept, so `rows` may stream (a reader of seed shards)."""
    parent: list[int] = []
    ids: list[str] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        parent.append(i)
        ids.append(row["id"])
        keys = []
        if row.get("speaker"):
            keys.append(f"speaker:{row['speaker']}")
        if row.get("transcript"):
            keys.append(f"text:{_norm(row['transcript'])}")
        for key in keys:
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    del first
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(parent)):
        groups[find(i)].append(i)
    # Name each group by its smallest clip id so the order below does not depend on row order.
    return len(parent), {min(ids[i] for i in members): members for members in groups.values()}


def assign_splits(rows: Iterable[dict[str, Any]], test_fraction: float, seed: int = 0) -> list[str]:
    """`train`/`test` per row, in row order."""
    n, groups = _groups(rows)
    budget = round(test_fraction * n)
    order = sorted(groups, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    split = [TRAIN] * n
    for name in order:
        members = groups[name]
        if len(members) <= budget:
            for i in members:
                split[i] = TEST
            budget -= len(members)
    return split
