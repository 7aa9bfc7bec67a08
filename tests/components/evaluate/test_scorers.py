"""Label accuracy, WER/CER and Speech-IFEval instruction checks on hand-worked examples."""

from __future__ import annotations

import pytest

from components.evaluate.scorers import (
    STOPWORDS,
    accuracy,
    cer,
    check_instruction,
    check_instructions,
    count_paragraphs,
    detect_language,
    forgetting_rate,
    if_rate,
    normalize_label,
    normalize_transcript,
    wer,
)

# ------------------------------------------------------------------ accuracy


def test_normalize_label() -> None:
    assert normalize_label("  Happy. ") == "happy"
    assert normalize_label("Non-binary") == "nonbinary"
    assert normalize_label("ＳＡＤ\t!") == "sad"  # NFKC folds full-width letters


def test_accuracy() -> None:
    assert accuracy(["Happy.", " sad", "NEUTRAL!", "angry"], ["happy", "Sad", "neutral", "fear"]) == 75.0
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="zero examples"):
        accuracy([], [])


# ------------------------------------------------------------------ WER / CER


def test_normalize_transcript() -> None:
    assert normalize_transcript("Don't STOP—it's well-known!") == "dont stop its well known"
    assert normalize_transcript("  a\n\tb  ") == "a b"


def test_wer() -> None:
    # 5 reference words after normalisation, 1 substitution (world -> word).
    assert wer(["The cat sat.", "Hello, world!"], ["the cat sat", "hello word"]) == pytest.approx(0.2)
    assert wer(["Don't stop"], ["dont stop"]) == 0.0
    assert wer(["well-known fact"], ["well known fact"]) == 0.0
    assert wer(["a b"], [""]) == 1.0  # two deletions over two words


def test_cer() -> None:
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    # "hi there" (8 chars with the space) vs "hi their": 2 substitutions.
    assert cer(["Hi, there"], ["hi their"]) == pytest.approx(0.25)


def test_error_rates_need_words() -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        wer(["?!", ""], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"])


# ------------------------------------------------------------------ instruction following

CASES = [
    ("length_constraints:number_words", {"num_words": 4, "relation": "less than"}, "one two three", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "one two three", False),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "one, two... three!", True),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "It's fine", True),  # it / s / fine
    ("change_case:english_lowercase", {}, "hello world 123", True),
    ("change_case:english_lowercase", {}, "Hello world", False),
    ("change_case:english_lowercase", {}, "123 !", False),  # no cased letter at all
    ("change_case:english_capital", {}, "HELLO, WORLD!", True),
    ("change_case:english_capital", {}, "HELLO world", False),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, ' {"a": [1, 2]} ', True),
    ("detectable_format:json_format", {}, "{'a': 1}", False),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* one\n* two\n- three", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**Title**\n* one", True),  # "**" is not a bullet
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "1. one\n2. two", True),  # numbered lines count
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\\n* b", True),  # literal \n read as newline
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b\n* c", False),
    ("language:response_language", {"language": "en"}, "The cat is on the table and it is sleeping.", True),
    ("language:response_language", {"language": "fr"}, "Le chat est sur la table et il dort.", True),
    ("language:response_language", {"language": "es"}, "El gato está en la mesa y no duerme.", True),
    ("language:response_language", {"language": "de"}, "Die Katze ist auf dem Tisch und sie schläft nicht.", True),
    ("language:response_language", {"language": "fr"}, "The cat is on the table.", False),
    ("language:response_language", {"language": "de"}, "12345 !", True),  # nothing to detect: followed
    ("keywords:existence", {"keywords": ["Peace", "pig"]}, "Peaceful PIGS.", True),  # substring, any case
    ("keywords:existence", {"keywords": ["peace", "cow"]}, "peaceful pigs", False),
    ("keywords:existence", {"keywords": ["C++"]}, "I like c++ a lot", True),
    ("keywords:forbidden_words", {"forbidden_words": ["plain"]}, "The answer is plain.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["plain"]}, "It is plainly said.", True),  # whole words only
    ("keywords:forbidden_words", {"forbidden_words": ["glass cat", "colours"]}, "A Glass Cat sat.", False),
    ("startend:end_checker", {"end_phrase": "Kind regards, your assistant."}, 'Sure.\nkind regards, your assistant."', True),
    ("startend:end_checker", {"end_phrase": "Kind regards, your assistant."}, "Kind regards, your assistant. Bye", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "The answer is:"}, '"the answer is: a dog', True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "The answer is:"}, "Well, the answer is: a dog", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n\nb\n\nc", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "a *** b", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "a\n \nb", False),  # blank inner paragraph
    ("startend:quotation", {}, ' "All of it." ', True),
    ("startend:quotation", {}, '"', False),
    ("detectable_format:title", {}, "<<My Poem>>\nRoses are red.", True),
    ("detectable_format:title", {}, "<< >> no title", False),
]


@pytest.mark.parametrize(("kind", "kwargs", "response", "expected"), CASES)
def test_check_instruction(kind: str, kwargs: dict, response: str, expected: bool) -> None:
    assert check_instruction(kind, kwargs, response) is expected


@pytest.mark.parametrize("kind", ["change_case:english_lowercase", "startend:quotation", "keywords:forbidden_words"])
def test_blank_response_never_follows(kind: str) -> None:
    # Strict mode upstream: `response.strip() and check(...)`; forbidden_words would pass otherwise.
    assert check_instruction(kind, {"forbidden_words": ["x"]}, "  \n") is False


def test_paragraph_count() -> None:
    assert count_paragraphs("\n\na\nb\n") == 2
    assert count_paragraphs("a\n \nb") is None


def test_language_heuristic() -> None:
    assert all(not (STOPWORDS[a] & STOPWORDS[b]) for a in STOPWORDS for b in STOPWORDS if a != b)
    assert detect_language("qwerty zxcv") is None
    with pytest.raises(ValueError, match="not supported"):
        check_instruction("language:response_language", {"language": "zh"}, "你好")


def test_bad_instruction_specs() -> None:
    with pytest.raises(ValueError, match="unsupported instruction kind"):
        check_instruction("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "Hi.")
    with pytest.raises(ValueError, match=r"needs kwargs \['num_bullets'\]"):
        check_instruction("detectable_format:number_bullet_lists", {}, "* a")
    with pytest.raises(ValueError, match="relation must be one of"):
        check_instruction("length_constraints:number_words", {"num_words": 3, "relation": "at most"}, "a b")


def test_check_instructions_and_if_rate() -> None:
    followed = check_instructions(
        ["change_case:english_capital", "startend:quotation"], [{}, None], '"YES"'
    )
    assert followed == [True, True]
    # Instruction level: 3 of 5 instructions followed.
    assert if_rate([True, False, [True, True], [False]]) == 60.0
    with pytest.raises(ValueError, match="zero instructions"):
        if_rate([])


def test_forgetting_rate() -> None:
    # Speech-IFEval README: DeSTA2 89.23 vs Llama3-8B-Instruct 92.53 -> -3.57 (shown x100).
    assert round(forgetting_rate(89.23, 92.53) * 100, 2) == -3.57
    assert forgetting_rate(50.0, 40.0) == 0.25
    with pytest.raises(ValueError, match="text-only IF rate is 0"):
        forgetting_rate(10.0, 0.0)
