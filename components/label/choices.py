"""Choice-format copies of attribute rows: the option the labeller's own answer states (#7).

A frozen 135M backbone answers a multiple-choice question by position or prior ("Male", the first
option), whatever the connector carries: trained on open answers only, the tiny model said "Male"
to the evaluation's choice questions even on its training clips. And the labeller cannot be asked
choice questions itself: SmolLM2 picks the first option whatever the seed says. So a kept answer to
an attribute question ("The speaker is a woman.") gets a second row: a choice question about the
same attribute, the options in a per-row random order, and as response the option that answer
states ("Female"), only when that is the seed's value too (as `label.focus` ensures), so nothing new
is claimed. Off in the paper profiles (the paper trains on open answers only).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from components.label.attributes import mentions, seed_value
from components.label.rows import aqa_row
from components.vocab import QUESTIONS as EVAL_QUESTIONS
from components.vocab import mcq_prompt

# The same options as the evaluation's attribute questions.
CHOICES: dict[str, list[str]] = {name: choices for name, (_, choices, _) in EVAL_QUESTIONS.items()}
# Worded unlike the evaluation's questions (components/vocab.py), so the model learns the
# choice format, not the test's sentences.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "Gender": ("Which gender is the speaker?", "What gender does the voice belong to?",
               "What gender is the person talking?"),
    "Pitch": ("What is the pitch of the voice?", "How high or low is the speaker's voice?"),
    "Speaking speed": ("What is the speaking pace?", "How quickly does the person talk?"),
    "Volume": ("What is the loudness of the speech?", "How loud does the speaker sound?"),
}
SUFFIX = "-choice"


def stated_option(response: str, attribute: str) -> str | None:
    """The one option of `attribute` the answer states, or None (not stated, or more than one)."""
    said = mentions(response).get(attribute, set())
    return next(iter(said)) if len(said) == 1 and next(iter(said)) in CHOICES.get(attribute, ()) else None


def choice_row(seed: dict[str, Any], index: int, attribute: str | None, response: str) -> dict[str, Any] | None:
    """The choice-format copy of a kept row about `attribute`, or None when the answer states no single
    option or one that is not the seed's."""
    option = stated_option(response, attribute) if attribute in CHOICES else None
    if option is None or option != seed_value(seed["seed_description"], attribute):
        return None
    rng = random.Random(hashlib.sha256(f"{seed['id']}\x00{index}\x00choice".encode()).hexdigest())
    choices = list(CHOICES[attribute])
    rng.shuffle(choices)
    prompt = mcq_prompt({"question": rng.choice(QUESTIONS[attribute]), "choices": choices})
    row = aqa_row(seed, index, prompt, option)
    row["id"] += SUFFIX
    return row
