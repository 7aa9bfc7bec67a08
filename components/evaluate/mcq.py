"""Attribute multiple-choice questions in the MMAU layout, built from held-out seed rows.

One question per known attribute of a test clip (gender, pitch, speaking speed, volume, sound
category, what was said; for music the instrument family, pitch register and tempo); the answer is the seed's own attribute, so the questions test exactly
what the connector was trained to carry. Chance level = 1 / number of choices.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from typing import Any

from components.text import distinct_readings, normalize_transcript
from components.vocab import CATEGORY, INSTRUMENT, MUSIC_QUESTIONS, QUESTIONS, SAID


def _rng(*parts: str) -> random.Random:
    return random.Random(hashlib.sha256(":".join(parts).encode()).hexdigest())


class _AllBut(Sequence):
    """`items` without the one at `skip`, as a view: `random.sample` draws from it exactly as from the copied
    list, and building a question costs O(1) instead of a copy of every held-out transcript (quadratic)."""

    def __init__(self, items: list[str], skip: int | None) -> None:
        self.items, self.skip = items, skip

    def __len__(self) -> int:
        return len(self.items) - (self.skip is not None)

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.items[i + (self.skip is not None and i >= self.skip)]


def build_mcq(seeds: Iterable[dict[str, Any]], n_distractors: int = 3) -> list[dict[str, Any]]:
    """MMAU-layout question rows for the test-split seeds."""
    test = [r for r in seeds if r.get("split") == "test"]
    # One option per way a sentence reads: "Rear Center." and "Rear center." are one answer, never each
    # other's distractor (case and punctuation aside, as WER reads them).
    transcripts = sorted(distinct_readings(r.get("transcript") for r in test if r["kind"] == "speech").values())
    position = {normalize_transcript(t): i for i, t in enumerate(transcripts)}
    categories = sorted({r["attributes"]["Audio category"]["value"] for r in test if r["kind"] == "sound"
                         and r["attributes"]["Audio category"]["value"] != "unknown"})
    families = sorted({r["attributes"]["Instrument"]["value"] for r in test if r["kind"] == "music"
                       and "Instrument" in r["attributes"]})
    rows: list[dict[str, Any]] = []
    for seed in test:
        attrs = {k: v["value"] for k, v in seed["attributes"].items()}
        items: list[tuple[str, str, list[str], str, str]] = []  # (sub-category, question, choices, answer, difficulty)
        if seed["kind"] in ("speech", "music"):
            for name, (question, choices, difficulty) in (QUESTIONS if seed["kind"] == "speech" else MUSIC_QUESTIONS).items():
                if attrs.get(name) in choices:
                    order = list(choices)
                    _rng(seed["id"], name, "order").shuffle(order)  # as MMAU: position tells nothing
                    items.append((name, question, order, attrs[name], difficulty))
            text = seed.get("transcript")
            others = _AllBut(transcripts, position.get(normalize_transcript(text or "")))
            if seed["kind"] == "speech" and text and len(others) >= n_distractors:
                choices = _rng(seed["id"], "said").sample(others, n_distractors) + [text]
                _rng(seed["id"], "said-order").shuffle(choices)
                items.append(("What was said", SAID, choices, text, "easy"))
        if seed["kind"] == "music" and attrs.get("Instrument") in families and len(families) > n_distractors:
            family = attrs["Instrument"]
            choices = _rng(seed["id"], "family").sample([f for f in families if f != family], n_distractors) + [family]
            _rng(seed["id"], "family-order").shuffle(choices)
            items.append(("Instrument", INSTRUMENT, choices, family, "medium"))
        elif attrs.get("Audio category") in categories and len(categories) > n_distractors:
            cat = attrs["Audio category"]
            choices = _rng(seed["id"], "cat").sample([c for c in categories if c != cat], n_distractors) + [cat]
            _rng(seed["id"], "cat-order").shuffle(choices)
            items.append(("Sound category", CATEGORY, choices, cat, "medium"))
        for sub, question, choices, answer, difficulty in items:
            rows.append({
                "id": f"{seed['id']}-{sub.lower().replace(' ', '_')}",
                "audio": seed["audio"],
                "transcript": seed.get("transcript"),
                "question": question,
                "choices": choices,
                "answer": answer,
                "task": "sound" if sub == "Sound category" else "music" if seed["kind"] == "music" else "speech",
                "sub-category": sub,
                "difficulty": difficulty,
                "chance": round(100.0 / len(choices), 2),
            })
    return rows
