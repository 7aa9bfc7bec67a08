"""Choice-format copies of attribute rows: the option the labeller's own answer states (#7).

A frozen 135M backbone answers a multiple-choice question by position or prior ("Male", the first
option), whatever the connector carries: trained on open answers only, the tiny model said "Male"
to the evaluation's choice questions even on its training clips. And the labeller cannot be asked
choice questions itself: SmolLM2 picks the first option whatever the seed says. So a kept answer to
an attribute question ("The speaker is a woman.") gets a second row: a choice question about the
same attribute, the options in a per-row random order, and as response the option that answer
states ("Female"), only when that is the seed's value too (as `label.focus` ensures), so nothing new
is claimed. A kept "what was said" answer gets one too: the seed's transcript among three transcripts of
other clips labelled beside it (the evaluation's "What was said" layout); with `label.choice_said` every
labelled clip with a transcript gets that row, answer or not (`said_choice`). Off in the paper profiles
(the paper trains on open answers only).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from collections.abc import Iterable

from components.label.attributes import SAID_KIND, domain, mentions, says, seed_value, states
from components.label.rows import aqa_row
from components.text import distinct_readings, normalize_transcript
from components.vocab import INSTRUMENT_FAMILIES, MUSIC_QUESTIONS, mcq_prompt
from components.vocab import QUESTIONS as EVAL_QUESTIONS

# The same options as the evaluation's attribute questions (an instrument question: four of the families).
CHOICES: dict[str, list[str]] = {name: choices for name, (_, choices, _) in (EVAL_QUESTIONS | MUSIC_QUESTIONS).items()}
CHOICES["Instrument"] = INSTRUMENT_FAMILIES
DRAWN = {"Instrument": 4}  # options drawn from a longer list (the answer and three others), as the evaluation's
# Worded unlike the evaluation's questions (components/vocab.py), so the model learns the
# choice format, not the test's sentences.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "Gender": ("Which gender is the speaker?", "What gender does the voice belong to?",
               "What gender is the person talking?"),
    "Pitch": ("What is the pitch of the voice?", "How high or low is the speaker's voice?"),
    "Speaking speed": ("What is the speaking pace?", "How quickly does the person talk?"),
    "Volume": ("What is the loudness of the speech?", "How loud does the speaker sound?"),
    "Instrument": ("What kind of instrument is playing?", "Which instrument family do you hear?"),
    "Pitch register": ("Are the notes of the melody high or low?", "How high is the music played?"),
    "Tempo": ("How fast is the music?", "What is the pace of the melody?"),
}
# "What was said" as a choice: worded unlike the evaluation's question too.
SAID_QUESTIONS = ("Which sentence does the speaker say?", "Which of these words are spoken in the clip?",
                  "What is said in the recording?")
SAID_DISTRACTORS = 3  # as the evaluation's questions: four options
SUFFIX = "-choice"


def _rng(seed: dict[str, Any], index: int | str) -> random.Random:
    return random.Random(hashlib.sha256(f"{seed['id']}\x00{index}\x00choice".encode()).hexdigest())


def _row(seed: dict[str, Any], index: int | str, question: str, choices: list[str], answer: str) -> dict[str, Any]:
    row = aqa_row(seed, index, mcq_prompt({"question": question, "choices": choices}), answer)
    row["id"] += SUFFIX
    return row


def choice_copy(seed: dict[str, Any], index: int, kind: str, attribute: str | None, response: str,
                transcripts: Iterable[str]) -> dict[str, Any] | None:
    """The choice-format copy of a kept row, by its instruction's kind: a "what was said" answer among
    other `transcripts` (`said_row`), an attribute answer among the attribute's options (`choice_row`)."""
    if kind == SAID_KIND:
        return said_row(seed, index, response, transcripts)
    return choice_row(seed, index, attribute, response)


def said_row(seed: dict[str, Any], index: int, response: str, transcripts: Iterable[str]) -> dict[str, Any] | None:
    """The seed's transcript among SAID_DISTRACTORS others (train clips labelled beside it), when the
    answer gives it; None when it does not or too few others are known."""
    if not says(response, seed.get("transcript") or ""):
        return None
    return _said(seed, index, transcripts)


def said_choice(seed: dict[str, Any], transcripts: Iterable[str]) -> dict[str, Any] | None:
    """`label.choice_said`: a clip's "what was said" choice row, no answer needed (its response is the
    corpus's transcript, not the labeller's words); id `<clip>-said-choice`."""
    return _said(seed, "said", transcripts)


def _said(seed: dict[str, Any], index: int | str, transcripts: Iterable[str]) -> dict[str, Any] | None:
    """The seed's transcript among SAID_DISTRACTORS others that read differently (case and punctuation
    aside: "Rear Center." is no distractor of "Rear center."); None without a transcript or enough others."""
    text = seed.get("transcript") or ""
    spoken = distinct_readings(transcripts)
    spoken.pop(normalize_transcript(text), None)
    others = sorted(spoken.values())
    if not text or len(others) < SAID_DISTRACTORS:
        return None
    rng = _rng(seed, index)
    choices = rng.sample(others, SAID_DISTRACTORS) + [text]
    rng.shuffle(choices)
    return _row(seed, index, rng.choice(SAID_QUESTIONS), choices, text)


def choice_row(seed: dict[str, Any], index: int, attribute: str | None, response: str) -> dict[str, Any] | None:
    """The choice-format copy of a kept row about `attribute`, or None when the answer does not state the
    seed's option and only it. Its answer is the seed's option: "speaks loudly" of a High clip states
    High's side of the scale (attributes.SIDES), and the row teaches High."""
    option = seed_value(seed["seed_description"], attribute) if attribute in CHOICES else None
    said = mentions(response, domain([attribute])).get(attribute) if option in CHOICES.get(attribute, ()) else None
    if option is None or not states(said, attribute, option):
        return None
    rng = _rng(seed, index)
    choices = list(CHOICES[attribute])
    rng.shuffle(choices)
    if attribute in DRAWN:
        choices = rng.sample([c for c in choices if c != option], DRAWN[attribute] - 1) + [option]
        rng.shuffle(choices)
    return _row(seed, index, rng.choice(QUESTIONS[attribute]), choices, option)


def stated_rows(seed: dict[str, Any], index: int, response: str, stated: Iterable[str],
                skip: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Choice rows for the other attributes a kept answer states as the seed does ("A woman speaks slowly."
    asked about gender also teaches the speed), by attribute, for those not in `skip`; `stated` = the
    answer's `attributes.stated_values`; ids end in the attribute."""
    out = {}
    for attribute in dict.fromkeys(v.split("=")[0] for v in stated):
        if attribute not in skip and (row := choice_row(seed, index, attribute, response)) is not None:
            row["id"] += "-" + attribute.lower().replace(" ", "-")
            out[attribute] = row
    return out
