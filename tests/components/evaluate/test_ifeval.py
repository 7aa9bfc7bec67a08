from __future__ import annotations

import pytest

from components.evaluate.ifeval import IF_PROMPTS, if_check, if_settled

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


ANSWERS = [
    *FOLLOWS.values(),
    "The Sound: " + " ".join(["word"] * 30) + "\n\n- x",
    "The audio is a recording of the theme.",
    "Theory: a man speaks. Then there is silence.",
    "the speaker is calm and the voice is low",
    "A WOMAN SAYS thank you",
    "* one\n* two\n* three\n- four",
    '"Quoted" then more text',
    "  there is a bell, then a recording ends.",
    "without them, theirs is the sound",
]


@pytest.mark.parametrize("item", IF_PROMPTS, ids=[p["kind"] for p in IF_PROMPTS])
def test_a_settled_prefix_has_the_verdict_of_every_continuation(item: dict) -> None:
    """`if_settled` on a prefix claims that nothing appended changes the verdict: check it against every
    answer that prefix begins (the answers above, cut at every character), and that it does settle."""
    settled = 0
    for answer in ANSWERS:
        for cut in range(1, len(answer) + 1):
            prefix = answer[:cut]
            if if_settled(item, prefix):
                settled += 1
                endings = [a for a in ANSWERS if a.startswith(prefix)] + [prefix + " the end", prefix + "X"]
                assert {if_check(item, e) for e in endings} == {if_check(item, prefix)}, (prefix, endings)
    if item["kind"] not in ("startend:end_checker",):
        assert settled, "this kind never settles on these answers"
