"""Speech-IFEval-style prompts about a clip, each with one verifiable constraint."""

from __future__ import annotations

from typing import Any

from components.evaluate.scorers import check_instruction

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
