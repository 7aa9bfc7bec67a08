"""Measured attributes on real synthetic speech whose settings we choose (espeak-ng)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from components.audio import load_audio
from components.measure import gender_from_pitch, measure, words_per_second

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


def test_speed_follows_espeak_rate(tmp: Path) -> None:
    slow = measure(_speak(tmp, "slow", "-v", "en-us+m3", "-s", "100"))
    fast = measure(_speak(tmp, "fast", "-v", "en-us+m3", "-s", "250"))
    assert words_per_second(TEXT, fast.voiced_seconds) > 1.8 * words_per_second(TEXT, slow.voiced_seconds)
    assert slow.voiced_seconds <= slow.duration


def test_pitch_follows_espeak_pitch(tmp: Path) -> None:
    low = measure(_speak(tmp, "low", "-v", "en-us+m3", "-p", "10"))
    high = measure(_speak(tmp, "high", "-v", "en-us+m3", "-p", "90"))
    assert high.pitch_hz > 1.3 * low.pitch_hz
    assert gender_from_pitch(low.pitch_hz) == "Male"


def test_silence_and_tiny_clips_do_not_crash() -> None:
    m = measure(torch.zeros(16000))
    assert m.pitch_hz is None and m.loudness_db is None and m.voiced_seconds >= 0
    short = measure(torch.from_numpy(np.sin(np.arange(1600) / 16000 * 2 * np.pi * 200).astype(np.float32)))
    assert short.pitch_hz is None and short.loudness_db is not None
