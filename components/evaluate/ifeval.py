"""Speech-IFEval-style prompts about a clip, each with one verifiable constraint."""

from __future__ import annotations

from typing import Any

from components.evaluate.scorers import check_instruction, count_bullets, count_words

IF_PROMPTS: list[dict[str, Any]] = [
    {"prompt": "Describe the audio in fewer than 20 words.",
     "kind": "length_constraints:number_words", "kwargs": {"num_words": 20, "relation": "less than"}},
    {"prompt": "Describe what you hear. Your entire answer must be in lowercase letters.",
     "kind": "change_case:english_lowercase", "kwargs": {}},
    {"prompt": "Describe the speaker's voice. Your entire answer must be in capital letters.",
     "kind": "change_case:english_capital", "kwargs": {}},
    {"prompt": "Summarise the audio as exactly 2 markdown bullet points, each starting with '* '.",
     "kind": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}},
    {"prompt": "Describe the audio. End your answer with the exact phrase 'That is all.'",
     "kind": "startend:end_checker", "kwargs": {"end_phrase": "That is all."}},
    {"prompt": "Describe the audio without using the word 'the'.",
     "kind": "keywords:forbidden_words", "kwargs": {"forbidden_words": ["the"]}},
    {"prompt": "Describe the audio and include the word 'recording' in your answer.",
     "kind": "keywords:existence", "kwargs": {"keywords": ["recording"]}},
    {"prompt": "Wrap your entire description of the audio in double quotation marks.",
     "kind": "startend:quotation", "kwargs": {}},
]


def if_check(item: dict[str, Any], response: str) -> bool:
    """Whether `response` follows the prompt's constraint."""
    return check_instruction(item["kind"], item["kwargs"], response)


def _complete_words(text: str) -> str:
    """`text` up to its last non-word character: a word still being written may yet grow."""
    cut = max((i for i, ch in enumerate(text) if not (ch.isalnum() or ch == "_")), default=-1)
    return text[: cut + 1]


def if_settled(item: dict[str, Any], text: str) -> bool:
    """Whether every continuation of `text` gets the same verdict as `text` itself, so generating more
    cannot change the IF rate. Only certain verdicts settle; the others need the whole answer."""
    text = text.rstrip("\ufffd").strip()  # a half-decoded character at the end is not text yet
    if not text:
        return False
    kind, kw = item["kind"], item["kwargs"]
    if kind == "length_constraints:number_words":  # the count never falls as text is added
        return count_words(text) >= kw["num_words"]
    if kind == "change_case:english_lowercase":
        return any(ch.isupper() for ch in text)
    if kind == "change_case:english_capital":
        return any(ch.islower() for ch in text)
    if kind == "keywords:forbidden_words":
        words = _complete_words(text)
        return bool(words.strip()) and not check_instruction(kind, kw, words)
    if kind == "keywords:existence":
        return check_instruction(kind, kw, text)
    if kind == "startend:quotation":
        return text[0] != '"'
    if kind == "detectable_format:number_bullet_lists":  # bullet lines only ever add up
        return count_bullets(text) > kw["num_bullets"]
    return False
