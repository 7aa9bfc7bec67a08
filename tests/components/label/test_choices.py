"""Choice-format copies of attribute rows: the stated option, shuffled options, nothing made up."""

from __future__ import annotations

from collections import Counter

import pytest

from components.label.choices import (
    said_choice,
    CHOICES,
    QUESTIONS,
    SUFFIX,
    SAID_QUESTIONS,
    choice_copy,
    choice_row,
    said_row,
)
from components.label.attributes import contradicts, focus, mentions, stated_values
from components.label.rows import ROW_KEYS
from components.vocab import MCQ_SUFFIX


def _seed(i: int) -> dict:
    return {"id": f"clip{i}", "dataset": "d", "audio": f"a/{i}.flac", "transcript": "hello there",
            "seed_description": "(Gender: Female, Pitch: High, Speaking speed: Slow)", "kind": "speech"}


@pytest.mark.parametrize(("response", "attribute", "seed", "option"), [
    ("The speaker is a woman.", "Gender", "Female", "Female"),
    ("He sounds calm.", "Gender", "Male", "Male"),
    ("The voice has a very high pitch.", "Pitch", "Very high", "Very high"),
    ("She speaks slowly.", "Speaking speed", "Slow", "Slow"),
    ("The volume is low.", "Volume", "Low", "Low"),
    ("The man and the woman talk.", "Gender", "Male", None),  # both genders: no single option
    ("A high pitch, then a low pitch.", "Pitch", "High", None),
    ("It is a calm recording.", "Gender", "Female", None),  # not stated
    ("The volume is low.", "Volume", "Very low", None),  # another level than the seed's
    # "loud"/"quiet" state a side of the scale: the row teaches the seed's level on that side
    ("She speaks loudly and clearly.", "Volume", "High", "High"),
    ("A loud voice.", "Volume", "Very high", "Very high"),
    ("He talks quietly.", "Volume", "Very low", "Very low"),
    ("A soft, quiet voice.", "Volume", "Low", "Low"),
    ("She speaks loudly.", "Volume", "Medium", None),  # wrong side
    ("She speaks loudly.", "Volume", "Low", None),
    ("He reads the words out loud.", "Volume", "High", None),  # reading aloud says nothing of the volume
    ("A loud voice at a low volume.", "Volume", "High", None),  # a level that is not the seed's
])
def test_choice_row_answers_the_seeds_option_when_the_answer_states_it(response: str, attribute: str, seed: str,
                                                                      option: str | None) -> None:
    clip = _seed(1) | {"seed_description": f"({attribute}: {seed}, Duration: 3s)"}
    row = choice_row(clip, 0, attribute, response)
    assert (row and row["response"]) == option


def test_the_sides_of_the_volume_scale_agree_with_their_levels_only() -> None:
    assert mentions("She speaks loudly, he quietly.")["Volume"] == {"Loud", "Quiet"}
    assert mentions("The loudness is high.")["Volume"] == {"High"}  # no side read in "loudness"
    seed = "(Gender: Female, Volume: Very high, Duration: 3s)"
    assert stated_values("A woman speaks loudly.", seed) == ["Gender=Female", "Volume=Very high"]
    assert contradicts("She speaks quietly.", seed) and contradicts("She is loud.", "(Volume: Medium)")
    assert focus("She speaks loudly. It is a nice day.", seed, "Volume") == ("She speaks loudly.", None)
    assert focus("She speaks softly.", seed, "Volume") == (None, "unfocused")


def test_choice_row_is_an_aqa_row_with_the_stated_option() -> None:
    row = choice_row(_seed(1), 2, "Gender", "The speaker is a woman.")
    assert row is not None and tuple(row) == ROW_KEYS
    assert row["id"] == "clip1-2" + SUFFIX and row["response"] == "Female"
    question, rest = row["prompt"].split(" Choices: ")
    assert question in QUESTIONS["Gender"] and rest.endswith(MCQ_SUFFIX)
    assert sorted(rest.removesuffix(MCQ_SUFFIX).strip(". ").split(", ")) == sorted(CHOICES["Gender"])
    assert row["messages"][1]["audios"] == [{"audio": "a/1.flac", "text": "hello there"}]
    assert choice_row(_seed(1), 2, "Gender", "The speaker is a woman.") == row  # deterministic
    assert choice_row(_seed(1), 2, None, "The speaker is a woman.") is None
    assert choice_row(_seed(1), 2, "Gender", "A calm voice.") is None
    assert choice_row(_seed(1), 2, "Gender", "He sounds calm.") is None  # not the seed's value (focus off)
    assert choice_row(_seed(1), 2, "Pitch", "The voice has a high pitch.")["response"] == "High"


def test_option_order_is_shuffled_per_row() -> None:
    """Position must tell the model nothing: each option comes first about equally often."""
    firsts = Counter()
    for i in range(400):
        row = choice_row(_seed(i), 0, "Gender", "She is talking.")
        firsts[row["prompt"].split(" Choices: ")[1].split(",")[0]] += 1
    assert set(firsts) == {"Male", "Female"} and min(firsts.values()) > 160


def test_said_row_puts_the_transcript_among_other_clips_transcripts() -> None:
    others = ["Turn left at the light.", "The soup needs salt.", "hello there", "We moved to the coast.", ""]
    row = said_row(_seed(3), 1, 'She says, "Hello there."', others)
    assert row is not None and tuple(row) == ROW_KEYS and row["id"] == "clip3-1" + SUFFIX
    assert row["response"] == "hello there"
    question, rest = row["prompt"].split(" Choices: ")
    options = rest.removesuffix(" " + MCQ_SUFFIX).removesuffix(".").split(", ")  # mcq_prompt's layout
    assert question in SAID_QUESTIONS and len(options) == 4 and options.count("hello there") == 1
    assert set(options) - {"hello there"} <= set(others) - {""}
    assert said_row(_seed(3), 1, 'She says, "Hello there."', others) == row  # deterministic
    assert said_row(_seed(3), 1, "She greets someone.", others) is None  # the answer does not give the words
    assert said_row(_seed(3), 1, "Hello there.", others[:2]) is None  # too few other transcripts
    assert choice_copy(_seed(3), 1, "said", None, "Hello there.", others) == said_row(_seed(3), 1, "Hello there.", others)
    assert choice_copy(_seed(3), 1, "gender", "Gender", "She talks.", others)["response"] == "Female"


def test_music_choice_rows_offer_four_families_or_the_register_and_tempo_words() -> None:
    seed = {"id": "m1", "dataset": "music", "audio": "a/m1.flac", "transcript": None, "kind": "music",
            "seed_description": "[00:00-00:04] (Instrument: Brass, Pitch register: High, Tempo: Fast, Duration: 4.0)"}
    assert mentions("A trumpet plays.", ("Instrument",)) == {"Instrument": {"Brass"}}
    options = Counter()
    for i in range(50):
        row = choice_row(seed, i, "Instrument", "A trumpet plays the melody.")
        choices = row["prompt"].split(" Choices: ")[1].removesuffix(MCQ_SUFFIX).strip(". ").split(", ")
        assert row["response"] == "Brass" and "Brass" in choices and len(set(choices)) == 4
        options.update(c for c in choices if c != "Brass")
    assert len(options) == len(CHOICES["Instrument"]) - 1  # every other family appears as a distractor
    assert choice_row(seed, 0, "Tempo", "The tempo is fast.")["response"] == "Fast"
    assert choice_row(seed, 0, "Pitch register", "The notes are low.") is None  # not the seed's value
    assert choice_row(seed, 0, "Instrument", "A piano plays.") is None


def test_said_choice_needs_no_answer_and_never_offers_the_words_twice() -> None:
    """label.choice_said: the clip's transcript among three others that read differently from it and from
    each other (case and punctuation aside); too few such others, or no transcript, gives no row."""
    from components.text import normalize_transcript

    others = ["Hello there.", "HELLO THERE", "Turn left at the light.", "turn left at the light",
              "The soup needs salt.", "We moved to the coast.", ""]
    row = said_choice(_seed(3), others)
    assert row is not None and tuple(row) == ROW_KEYS and row["id"] == "clip3-said" + SUFFIX
    assert row["response"] == "hello there"
    options = row["prompt"].split(" Choices: ")[1].removesuffix(" " + MCQ_SUFFIX).removesuffix(".").split(", ")
    read = [normalize_transcript(o) for o in options]
    assert len(options) == 4 and len(set(read)) == 4 and read.count("hello there") == 1
    assert said_choice(_seed(3), others[:4]) is None  # one other sentence, spelt twice
    assert said_choice({**_seed(3), "transcript": None}, others) is None
