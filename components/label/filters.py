"""Quality filters on generated responses: empty, truncated, contradicting the seed, or leaking
the scaffolding.

A leak teaches the audio model to talk about a description it never sees at training time, and a
contradiction (the answer says "a man" for a female voice) teaches it the wrong attribute, so
those answers are regenerated (then quarantined) rather than kept.
"""

from __future__ import annotations

import re

from components.label import attributes
from components.vocab import MUSIC_FIELDS, OTHER_FIELDS, SPEECH_FIELDS

_FIELDS = "|".join(sorted(SPEECH_FIELDS + MUSIC_FIELDS + OTHER_FIELDS, key=len, reverse=True))

# name -> pattern; the name becomes the reason `leak:<name>` in stats and quarantine.
LEAKS: dict[str, re.Pattern[str]] = {
    "seed_description": re.compile(r"\bseed[\s_-]*descriptions?\b", re.I),
    "metadata": re.compile(r"\bmeta[\s-]?data\b", re.I),
    "timestamp": re.compile(r"\[\s*\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\s*(?:[-–]\s*\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\s*)?\]"
                            r"|\b\d{1,2}:\d{2}(?:\.\d+)?\s*[-–]\s*\d{1,2}:\d{2}\b"),
    "text_says": re.compile(r"\bthe (?:given |provided )?(?:text|transcript|transcription|note|notes) "
                            r"(?:says|said|states|mentions|reads|describes|indicates|shows)\b", re.I),
    "description_ref": re.compile(r"\b(?:according to|based on|from|in) the (?:given |provided |above )?"
                                  r"(?:description|information|details|text)\b"
                                  r"|\b(?:the|this) (?:given|provided|above) (?:description|information|text)\b", re.I),
    "instruction_ref": re.compile(r"\bthe (?:given |provided |user'?s? )?instructions? (?:asks?|says?|is|are|wants?|requires?)\b", re.I),
    "field_label": re.compile(rf"\b(?:{_FIELDS})\s*:\s*\w", re.I),
    "audio_token": re.compile(r"<\|?AUDIO\|?>|<\|im_(?:start|end)\|>", re.I),
    "instruction_echo": re.compile(r"^\s*(?:Instruction|What you hear in the clip)\s*:", re.I | re.M),
}

def trim_to_sentence(text: str) -> str | None:
    """The text up to its last complete sentence, or None when no sentence was finished."""
    ends = list(attributes.SENTENCE_END.finditer(text))
    if not ends:
        return None
    kept = text[: ends[-1].end()].strip()
    return kept if re.search(r"\w", kept) else None


def contradiction(response: str, seed_description: str) -> str | None:
    """`Gender` when the answer names the other gender than the seed's (anywhere), else None."""
    gender = attributes.seed_value(seed_description, "Gender")
    if gender not in attributes.GENDER_WORDS:
        return None
    other = "Female" if gender == "Male" else "Male"
    return "Gender" if attributes.GENDER_WORDS[other].search(response) else None


def check(response: str, finish: str, seed_description: str | None = None) -> str | None:
    """None if the response is kept, else the reason: `empty`, `truncated`, `leak:<name>` or
    `contradicts:<field>` (only when the seed description is given)."""
    if not response.strip() or not re.search(r"\w", response):
        return "empty"
    if finish == "length":
        return "truncated"
    for name, pattern in LEAKS.items():
        if pattern.search(response):
            return f"leak:{name}"
    if seed_description and (field := contradiction(response, seed_description)):
        return f"contradicts:{field}"
    return None


def accept(response: str, finish: str, seed_description: str | None = None,
           trim_truncated: bool = False, focus: bool = False,
           required: str | None = None, transcript: str | None = None) -> tuple[str, str | None, bool]:
    """(text to keep, reason or None, trimmed?). With `trim_truncated`, an answer that hit the token
    limit keeps its complete sentences (checked like any answer); with none finished it is `truncated`.
    With `focus` (and a seed), only the sentences that state the voice as the seed does are kept
    (attributes.focus; `required` = the attribute the instruction asks about). With `focus`, a "what was said" answer
    (`required` = attributes.SAID_KIND) must give the seed's `transcript` (`missing:transcript`); what it
    says besides the quoted words must not contradict the seed (`contradicts:voice`)."""
    trimmed = False
    if finish == "length" and trim_truncated and response.strip():
        kept = trim_to_sentence(response)
        if kept is not None:
            response, finish, trimmed = kept, "stop", True
    if focus and required == attributes.SAID_KIND:  # a focus rule: without focus (paper) answers are kept whole
        return response, _said_reason(response, finish, seed_description, transcript or ""), trimmed
    if focus and seed_description and finish != "length":
        focused, reason = attributes.focus(response, seed_description, required)
        if reason is not None:
            return response, reason, trimmed
        response = focused or response
    return response, check(response, finish, seed_description), trimmed


def _said_reason(response: str, finish: str, seed_description: str | None, transcript: str) -> str | None:
    if reason := check(response, finish):
        return reason
    if not attributes.says(response, transcript):
        return "missing:transcript"
    rest = attributes.without(response, transcript)
    if seed_description and re.search(r"\w", rest):
        if field := contradiction(rest, seed_description):
            return f"contradicts:{field}"
        if attributes.contradicts(rest, seed_description):
            return "contradicts:voice"
    return None
