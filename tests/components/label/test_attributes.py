"""Attribute mentions and focused targets (components/label/attributes.py), on answers SmolLM2-135M
actually gave on the embedded corpus."""

from __future__ import annotations

import hashlib

import pytest

from components.config import LabelConfig
from components.label import attributes, filters
from components.label.units import select_seeds
from components.vocab import LEVELS, SPEEDS

SEED = ("[00:00-00:02] Agent logged in. (Emotion: Neutral, Gender: Female, Pitch: High, Volume: Very high, "
        "Speaking speed: Slow, Duration: 2s)")
SOUND = "[00:00-00:01] (Audio category: bell, Duration: 1s)"


@pytest.mark.parametrize("sentence, found", [
    ("She speaks with a very high pitch.", {"Gender": {"Female"}, "Pitch": {"Very high"}}),
    ("The voice is high-pitched and the volume is very high.", {"Pitch": {"High"}, "Volume": {"Very high"}}),
    ("A high pitch and a very low volume.", {"Pitch": {"High"}, "Volume": {"Very low"}}),
    ("The speaking speed is quite fast.", {"Speaking speed": {"Fast"}}),
    ("The man talks very slowly.", {"Gender": {"Male"}, "Speaking speed": {"Very slow"}}),
    ("I would say this voice is low, medium, and high in pitch.", {}),
    ("The pace is rapid.", {"Speaking speed": {"Fast"}}),
    ("The meeting was moved.", {}),
])
def test_mentions_are_local_to_their_noun(sentence: str, found: dict[str, set[str]]) -> None:
    assert attributes.mentions(sentence) == found


def test_mention_values_are_the_seed_vocabulary() -> None:
    for level in LEVELS:
        assert attributes.mentions(f"It has a {level.lower()} pitch.")["Pitch"] == {level}
        assert attributes.mentions(f"The volume is {level.lower()}.")["Volume"] == {level}
    for speed in SPEEDS:
        assert attributes.mentions(f"It is spoken at a {speed.lower()} pace.")["Speaking speed"] == {speed}


def test_seed_value_reads_the_seed_description() -> None:
    assert attributes.seed_value(SEED, "Speaking speed") == "Slow"
    assert attributes.seed_value(SEED, "Volume") == "Very high"
    assert attributes.seed_value(SOUND, "Pitch") is None


@pytest.mark.parametrize("response, required, kept, reason", [
    # real answers: the wrong-level and off-topic sentences go, the right ones stay
    ("The voice is a neutral, female voice with a high pitch. The tone is neutral. The instructions are clear.",
     "Gender", "The voice is a neutral, female voice with a high pitch.", None),
    ("The voice is high, but the pitch is high. The speaking speed is fast. It lasts 2 seconds.",
     "Pitch", "The voice is high, but the pitch is high.", None),
    ("I would say this voice is low, medium, and high in pitch.", "Pitch", None, "unfocused"),
    ("The voice sounds like a male.", "Gender", None, "unfocused"),
    ("She has a very high volume. It is a man speaking slowly.", "Volume", "She has a very high volume.", None),
    ("She speaks with a high pitch.", "Speaking speed", None, "missing:Speaking speed"),
    ("She speaks with a high pitch and a low volume.", "Pitch", None, "unfocused"),  # one wrong value spoils it
])
def test_focus_keeps_only_right_statements(response: str, required: str, kept: str | None, reason: str | None) -> None:
    assert attributes.focus(response, SEED, required) == (kept, reason)


def test_stated_values_are_what_a_kept_answer_teaches() -> None:
    """Counted in label stats (`rows_by_stated_value`): the seed's values the answer states, and only where
    it states no other value of the same attribute."""
    assert attributes.stated_values("She speaks slowly with a high pitch.", SEED) == [
        "Gender=Female", "Pitch=High", "Speaking speed=Slow"]
    assert attributes.stated_values("A high pitch, or maybe a low pitch. The volume is very high.", SEED) == [
        "Volume=Very high"]
    assert attributes.stated_values("A bell rings twice.", SOUND) == []


def test_focus_passes_sounds_unchanged() -> None:
    assert attributes.focus("A bell rings twice.", SOUND, None) == ("A bell rings twice.", None)


def test_accept_applies_focus_after_trimming_and_before_leak_checks() -> None:
    text, reason, trimmed = filters.accept("She talks slowly. The pitch is very", "length", SEED,
                                           trim_truncated=True, focus=True, required="Speaking speed")
    assert (text, reason, trimmed) == ("She talks slowly.", None, True)
    # without focus the same answer is kept whole (the default profile behaviour)
    assert filters.accept("She talks slowly. Nice.", "stop", SEED)[0] == "She talks slowly. Nice."
    # a leak in a kept sentence still rejects the answer
    assert filters.accept("Gender: Female, she talks slowly.", "stop", SEED, focus=True)[1] == "leak:field_label"


SAID_SEED = ("[00:00-00:02] He left the keys on the table. (Gender: Female, Pitch: High, Speaking speed: Slow, "
             "Duration: 2s)")


@pytest.mark.parametrize(("response", "reason"), [
    ('She says, "He left the keys on the table."', None),  # the quoted "He" is no claim about the voice
    ("he left the KEYS on the table", None),  # case and punctuation aside
    ("He left the keys on the table.", None),
    ('The speaker says: "He left the keys."', "missing:transcript"),  # not every word
    ("The table has keys on it.", "missing:transcript"),  # not in order
    ('A man says, "He left the keys on the table."', "contradicts:Gender"),
    ('She says "He left the keys on the table" in a low pitch.', "contradicts:voice"),
    ('The transcript says "He left the keys on the table."', "leak:text_says"),
])
def test_a_said_answer_must_give_the_words_and_claim_nothing_wrong(response: str, reason: str | None) -> None:
    """`said` instructions ("What does the speaker say?"): kept whole when the answer gives the transcript."""
    text, got, _ = filters.accept(response, "stop", SAID_SEED, trim_truncated=True, focus=True,
                                  required=attributes.SAID_KIND, transcript="He left the keys on the table.")
    assert (text, got) == (response, reason)
    # without focus (the paper profile) a said answer is judged as any answer: only the general checks
    assert filters.accept(response, "stop", SAID_SEED, required=attributes.SAID_KIND,
                          transcript="He left the keys on the table.")[1] == filters.check(response, "stop", SAID_SEED)


def _seed(i: int, speaker: str | None, split: str = "train") -> dict:
    return {"id": f"clip{i:03d}", "speaker": speaker, "split": split}


def test_speaker_cap_keeps_a_stable_subset_and_counts_the_rest() -> None:
    seeds = [_seed(i, "big") for i in range(40)] + [_seed(100 + i, "small") for i in range(3)] \
        + [_seed(200, None), _seed(201, "big", "test")]
    kept, skipped = select_seeds(iter(seeds), LabelConfig(max_clips_per_speaker=5))  # a stream will do
    rows = [seeds[i] for i in kept]
    assert skipped == {"split": 1, "speaker_cap": 35}
    assert sum(r["speaker"] == "big" for r in rows) == 5 and sum(r["speaker"] == "small" for r in rows) == 3
    assert any(r["speaker"] is None for r in rows)  # no speaker: never capped
    assert list(kept) == sorted(kept)  # input order kept
    # the kept subset is the first five of the speaker's clips in the per-(seed, clip) hash order
    ranked = sorted((s for s in seeds[:40]), key=lambda s: hashlib.sha256(f"{LabelConfig().seed}\x00{s['id']}".encode()).hexdigest())
    assert {r["id"] for r in rows if r["speaker"] == "big"} == {s["id"] for s in ranked[:5]}
    # a new clip of a capped speaker displaces at most one old clip
    more = seeds + [_seed(300, "big")]
    again, _ = select_seeds(more, LabelConfig(max_clips_per_speaker=5))
    assert len({r["id"] for r in rows} - {more[i]["id"] for i in again}) <= 1
    assert select_seeds(seeds, LabelConfig())[1] == {"split": 1, "speaker_cap": 0}


MUSIC = "[00:00-00:04] (Instrument: Brass, Pitch register: High, Tempo: Fast, Duration: 4.0)"


@pytest.mark.parametrize("sentence, found", [
    ("A trumpet plays a fast melody in a high register.", {"Instrument": {"Brass"}, "Pitch register": {"High"},
                                                          "Tempo": {"Fast"}}),
    ("The music is slow, played on a piano with low notes.", {"Instrument": {"Piano"}, "Pitch register": {"Low"},
                                                              "Tempo": {"Slow"}}),
    ("It sounds like a violin and a flute.", {"Instrument": {"Strings", "Flute"}}),
    ("The instrument is a pipe organ.", {"Instrument": {"Organ"}}),  # real answer: an organ, not a pipe
    ("The tempo is moderate and the melody sits in the middle register.", {"Tempo": {"Medium"},
                                                                           "Pitch register": {"Medium"}}),
    ("He plays quickly on the clarinet.", {"Instrument": {"Reed"}, "Tempo": {"Fast"}}),  # no gender for music
])
def test_music_mentions(sentence: str, found: dict[str, set[str]]) -> None:
    assert attributes.mentions(sentence, attributes.MUSIC_ATTRIBUTES) == found


def test_voice_answers_read_no_music_words() -> None:
    """A voice's "high tone" or "fast tempo" is no register or music tempo: speech answers read as before."""
    assert attributes.mentions("Her voice has a high tone and a fast tempo.") == {"Gender": {"Female"},
                                                                                 "Speaking speed": {"Fast"}}
    assert attributes.focus("Her voice has a high tone.", SEED, "Gender") == ("Her voice has a high tone.", None)
    assert attributes.focus("The notes are high.", SEED, None) == (None, "unfocused")


@pytest.mark.parametrize("response, required, kept, reason", [
    ("A trumpet plays a fast melody. I like it.", "Instrument", "A trumpet plays a fast melody.", None),
    ("It is a piano. The tempo is fast.", "Tempo", "The tempo is fast.", None),
    ("It is a piano.", "Instrument", None, "unfocused"),  # the wrong family
    ("The tempo is fast.", "Instrument", None, "missing:Instrument"),
    ("A trumpet and a violin play.", "Instrument", None, "unfocused"),  # two families: no single answer
    ("The melody is played in a low register by a horn.", "Pitch register", None, "unfocused"),
])
def test_focus_on_music(response: str, required: str, kept: str | None, reason: str | None) -> None:
    assert attributes.focus(response, MUSIC, required) == (kept, reason)
    assert attributes.stated_values("A trumpet plays quickly.", MUSIC) == ["Instrument=Brass", "Tempo=Fast"]
