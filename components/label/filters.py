"""Quality filters on generated responses: empty, truncated, or leaking the scaffolding.

A leak teaches the audio model to talk about a description it never sees at training time,
so those answers are regenerated (then quarantined) rather than kept.
"""

from __future__ import annotations

import re

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
    "field_label": re.compile(r"\b(?:Emotion|Gender|Pitch|Volume|Speaking speed|Duration|Audio category)\s*:\s*\w", re.I),
    "audio_token": re.compile(r"<\|?AUDIO\|?>|<\|im_(?:start|end)\|>", re.I),
    "instruction_echo": re.compile(r"^\s*(?:Instruction|What you hear in the clip)\s*:", re.I | re.M),
}


def check(response: str, finish: str) -> str | None:
    """None if the response is kept, else the reason: `empty`, `truncated` or `leak:<name>`."""
    if not response.strip() or not re.search(r"\w", response):
        return "empty"
    if finish == "length":
        return "truncated"
    for name, pattern in LEAKS.items():
        if pattern.search(response):
            return f"leak:{name}"
    return None
