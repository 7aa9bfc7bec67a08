from __future__ import annotations

import pytest

from components.evaluate.ifeval import IF_PROMPTS, if_check

FOLLOWS = {
    "length_constraints:number_words": "A woman says thank you.",
    "change_case:english_lowercase": "a woman says thank you.",
    "change_case:english_capital": "A CALM FEMALE VOICE.",
    "detectable_format:number_bullet_lists": "* a woman speaks\n* she says thank you",
    "startend:end_checker": "A woman says thank you. That is all.",
    "keywords:forbidden_words": "A woman says thank you.",
    "keywords:existence": "This recording holds a woman's voice.",
    "startend:quotation": '"A woman says thank you."',
}


@pytest.mark.parametrize("item", IF_PROMPTS, ids=[p["kind"] for p in IF_PROMPTS])
def test_each_prompt_has_a_passing_and_a_failing_answer(item: dict) -> None:
    assert if_check(item, FOLLOWS[item["kind"]])
    assert not if_check(item, "The Sound: " + " ".join(["word"] * 30) + "\n\n- x")
