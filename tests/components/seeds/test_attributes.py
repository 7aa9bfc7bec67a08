"""Measured attributes on real synthetic speech whose settings we choose (espeak-ng), and the words a
seed row gets from them (components/seeds/attributes.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from components.audio import load_audio
from components.measure import (Measured, gender_from_pitch, measure, syllable_count, syllables_per_second,
                                voiced_seconds)
from components.seeds.attributes import EdgeFitter, attributes, metadata_words, signal_values

TEXT = "The train to the city leaves at seven in the morning."


def _speak(tmp: Path, name: str, *args: str) -> torch.Tensor:
    wav = tmp / f"{name}.wav"
    subprocess.run(["espeak-ng", *args, "-w", str(wav), TEXT], check=True, capture_output=True)
    return load_audio(wav, 16000)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("espeak")


def test_volume_follows_gain(tmp: Path) -> None:
    wav = _speak(tmp, "base", "-v", "en-us+m3")
    loud, quiet = measure(wav), measure(wav * 10 ** (-12 / 20))
    assert loud.loudness_db - quiet.loudness_db == pytest.approx(12.0, abs=0.5)
    assert voiced_seconds(wav) == loud.voiced_seconds > 1.0  # the speech check's voiced time, without F0


def test_speed_follows_espeak_rate(tmp: Path) -> None:
    slow = measure(_speak(tmp, "slow", "-v", "en-us+m3", "-s", "100"))
    fast = measure(_speak(tmp, "fast", "-v", "en-us+m3", "-s", "250"))
    assert syllables_per_second(TEXT, fast.voiced_seconds) > 1.8 * syllables_per_second(TEXT, slow.voiced_seconds)
    assert slow.voiced_seconds <= slow.duration


def test_pitch_follows_espeak_pitch(tmp: Path) -> None:
    low = measure(_speak(tmp, "low", "-v", "en-us+m3", "-p", "10"))
    high = measure(_speak(tmp, "high", "-v", "en-us+m3", "-p", "90"))
    assert high.pitch_hz > 1.3 * low.pitch_hz
    assert gender_from_pitch(low.pitch_hz) == "Male"


def test_female_voice_reads_female_and_a_tone_reads_its_frequency(tmp: Path) -> None:
    """Praat's F0 on an espeak female voice (torchaudio's estimator read these ~150 Hz: "male")."""
    female = measure(_speak(tmp, "female", "-v", "en-us+f3", "-p", "50"))
    assert female.pitch_hz > 180 and gender_from_pitch(female.pitch_hz) == "Female"
    t = np.arange(16000) / 16000
    tone = measure(torch.from_numpy((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)))
    assert tone.pitch_hz == pytest.approx(220.0, rel=0.01)


def test_speaking_rate_counts_syllables(tmp: Path) -> None:
    assert [syllable_count(w) for w in ("the", "city", "morning", "everything", "zorblake")] == [1, 2, 2, 3, 2]
    slow = measure(_speak(tmp, "slow2", "-v", "en-us+f2", "-s", "110"))
    fast = measure(_speak(tmp, "fast2", "-v", "en-us+f2", "-s", "220"))
    ratio = syllables_per_second(TEXT, fast.voiced_seconds) / syllables_per_second(TEXT, slow.voiced_seconds)
    assert 1.6 < ratio < 2.4  # espeak's rate doubled
    assert syllables_per_second("", 1.0) is None and syllables_per_second(TEXT, 0.0) is None


def test_edges_are_equal_steps_of_what_is_heard_unless_fixed() -> None:
    """Pitch in equal ratios (semitones), volume in equal dB, over the 5th-95th percentile; one speaker's
    many clips in a narrow band do not get split into five words."""
    fitter = EdgeFitter()
    for i in range(100):
        fitter.add({"Pitch": 100.0 * 2 ** (i / 99), "Volume": -40.0 + i / 5, "Speaking speed": None if i % 2 else 2.0})
    for _ in range(300):  # one speaker, many clips
        fitter.add({"Pitch": 198.0, "Volume": -19.0, "Speaking speed": None})
    edges = fitter.edges({"Pitch": None, "Volume": None, "Speaking speed": None})
    ratios = [b / a for a, b in zip(edges["Pitch"], edges["Pitch"][1:])]
    assert max(ratios) - min(ratios) < 1e-3 and ratios[0] > 1.1  # equal steps, each > 1.6 semitones
    steps = [b - a for a, b in zip(edges["Volume"], edges["Volume"][1:])]
    assert max(steps) - min(steps) < 1e-2 and steps[0] > 3.0  # dB
    assert edges["Speaking speed"] == [2.0] * 4  # every rate the same: nothing to tell apart
    fixed = {"Pitch": None, "Volume": [-40.0, -30.0, -20.0, -10.0], "Speaking speed": None}
    assert fitter.edges(fixed)["Volume"] == fixed["Volume"]
    assert EdgeFitter().edges({"Pitch": None, "Volume": None, "Speaking speed": None})["Pitch"] == []


def test_signal_decides_and_the_metadata_word_is_kept_beside_it() -> None:
    """espeak's "High" pitch setting on a low male voice: the row says what is heard, and keeps the setting."""
    edges = {"Pitch": [100.0, 130.0, 165.0, 210.0], "Volume": [-40.0, -32.0, -24.0, -18.5],
             "Speaking speed": [3.0, 4.0, 5.0, 6.0]}
    meta = {"gender": "m", "emotion": "neutral", "synth": {"pitch": "High", "volume": "Medium", "speed": "Slow"}}
    m = Measured(duration=3.0, voiced_seconds=2.0, pitch_hz=95.0, loudness_db=-28.0)
    attrs = attributes(meta, m, signal_values(m, TEXT), edges)  # 14 syllables in 2 s: 7/s
    assert attrs["Pitch"] == {"value": "Very low", "source": "signal", "metadata": "High"}
    assert attrs["Volume"] == {"value": "Medium", "source": "signal", "metadata": "Medium"}
    assert attrs["Speaking speed"] == {"value": "Very fast", "source": "signal", "metadata": "Slow"}
    assert attrs["Gender"] == {"value": "Male", "source": "metadata", "signal": "Male"}
    assert attrs["Emotion"]["value"] == "Neutral"
    assert metadata_words({"pitch": "Low", "synth": {"pitch": "High"}}) == {"Pitch": "Low"}  # the corpus's own key first
    bare = Measured(1.0, 0.5, None, None)
    plain = attributes({}, bare, signal_values(bare, ""), edges)
    assert plain == {}  # nothing measurable, nothing made up


def test_silence_and_tiny_clips_do_not_crash() -> None:
    m = measure(torch.zeros(16000))
    assert m.pitch_hz is None and m.loudness_db is None and m.voiced_seconds >= 0
    short = measure(torch.from_numpy(np.sin(np.arange(1600) / 16000 * 2 * np.pi * 200).astype(np.float32)))
    assert short.pitch_hz is None and short.loudness_db is not None


def test_fixed_edges_must_be_four_ascending() -> None:
    from pydantic import ValidationError

    from components.config import SeedsConfig

    assert SeedsConfig(pitch_hz_edges=[100.0, 130.0, 165.0, 210.0]).pitch_hz_edges[0] == 100.0
    for bad in ([100.0, 130.0, 165.0], [100.0, 90.0, 165.0, 210.0]):
        with pytest.raises(ValidationError, match="4 ascending edges"):
            SeedsConfig(pitch_hz_edges=bad)
