"""MMAU string_match: hand-worked cases, each checked by reading the official rule."""

from __future__ import annotations

import pytest

from components.evaluate.scorers import mmau_tokens, string_match

PEOPLE = ["Man", "Woman", "Child", "Robot"]


def test_tokens_are_lowercased_word_runs() -> None:
    assert mmau_tokens("Door_wood-knock, 3.5 DOGS!") == {"door_wood", "knock", "3", "5", "dogs"}
    assert mmau_tokens("?! ...") == set()


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("Man", True),
        ("Man.", True),  # punctuation is not part of a token
        ("MAN", True),  # case-insensitive
        ("  the correct answer is: man\n", True),  # extra words are fine if no wrong-choice token
        ("Woman", False),  # "woman" is its own token: answer token "man" is missing
        ("Man or Woman", False),  # two choices named
        ("Man, not a child", False),  # wrong-choice token mentioned in passing
        ("", False),
        ("?!", False),  # no token at all
        ("Mankind", False),  # no substring matching
    ],
)
def test_simple_choices(prediction: str, expected: bool) -> None:
    assert string_match("Man", prediction, PEOPLE) is expected


def test_answer_token_shared_with_a_wrong_choice() -> None:
    choices = ["Dog barking", "Dog growling", "Cat meowing"]
    # "dog" is in the answer, so it is not a wrong-choice token.
    assert string_match("Dog barking", "A dog is barking.", choices)
    assert not string_match("Dog barking", "dog", choices)  # "barking" missing
    assert not string_match("Dog barking", "Dog barking, not growling", choices)


def test_answer_inside_a_longer_choice() -> None:
    choices = ["Guitar", "Bass guitar", "Piano"]
    assert string_match("Guitar", "guitar", choices)
    assert not string_match("Guitar", "Bass guitar", choices)  # "bass" belongs to a wrong choice only
    # The other way round, "guitar" is not a wrong token: "Guitar" minus the answer's tokens is empty.
    assert string_match("Bass guitar", "bass guitar", choices)
    assert not string_match("Bass guitar", "Guitar", choices)


def test_option_letter_clashes_with_an_article_in_a_wrong_choice() -> None:
    assert string_match("Man", "(A) Man", ["Man", "Woman"])
    # "a" is a token of the wrong choice "A cat", so "(A) Dog" fails.
    assert not string_match("Dog", "(A) Dog", ["Dog", "A cat"])


def test_choice_equal_to_answer_after_tokenising_is_not_wrong() -> None:
    assert string_match("Man", "man", ["Man", "man.", "Woman"])


def test_answer_not_listed_in_choices() -> None:
    assert string_match("Man", "man", ["Woman", "Child"])


def test_underscore_hyphen_apostrophe_digits_unicode() -> None:
    assert not string_match("door_wood_knock", "door wood knock", ["door_wood_knock", "bell"])
    assert string_match("well-known", "Well known", ["well-known", "obscure"])
    # "Don't" is the tokens "don" and "t"; "dont" is neither.
    assert not string_match("Don't know", "dont know", ["Don't know", "Know"])
    assert string_match("3", "There are 3 speakers.", ["3", "4", "5"])
    assert not string_match("3", "3 or 4", ["3", "4", "5"])
    assert string_match("Émile", "ÉMILE", ["Émile", "Zoé"])
