"""The paper's seed description format, from its own examples."""

from __future__ import annotations

import pytest

from components.measure import bucket
from components.vocab import LEVELS, SPEEDS
from components.seeds.describe import sound_description, speech_description, timestamp


def test_speech_example_from_the_paper() -> None:
    attrs = {"Emotion": "Neutral", "Gender": "Female", "Pitch": "Very high", "Volume": "Low",
             "Speaking speed": "Very slow"}
    assert speech_description(2.2, "Excuse me?", attrs) == (
        "[00:00-00:02] Excuse me? (Emotion: Neutral, Gender: Female, Pitch: Very high, Volume: Low, "
        "Speaking speed: Very slow, Duration: 2s)"
    )


def test_sound_example_from_the_paper() -> None:
    assert sound_description(5.0, "door_wood_knock") == "[00:00-00:05] (Audio category: door_wood_knock, Duration: 5.0)"


def test_unknown_attributes_are_left_out_not_guessed() -> None:
    assert speech_description(0.4, " hi ", {"Gender": "Male"}) == "[00:00-00:00] hi (Gender: Male, Duration: 1s)"


def test_timestamps_past_a_minute() -> None:
    assert timestamp(75.4) == "01:15"
    assert timestamp(0) == "00:00"


@pytest.mark.parametrize(("value", "word"), [(100, "Very low"), (120, "Low"), (150, "Low"), (200, "Medium"),
                                             (259.9, "High"), (400, "Very high")])
def test_bucket_edges(value: float, word: str) -> None:
    assert bucket(value, [120.0, 160.0, 210.0, 260.0], LEVELS) == word


def test_bucket_needs_one_more_word_than_edges() -> None:
    with pytest.raises(ValueError, match="4 edges need 5 words"):
        bucket(1.0, [1, 2, 3, 4], SPEEDS[:4])
