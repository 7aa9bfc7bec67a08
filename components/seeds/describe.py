"""The paper's seed description format.

Speech: `[00:00-00:02] Excuse me? (Emotion: Neutral, Gender: Female, Pitch: Very high, Volume: Low,
Speaking speed: Very slow, Duration: 2s)`; sound: `[00:00-00:05] (Audio category: door_wood_knock,
Duration: 5.0)`; music (this project's, in the sound layout): `[00:00-00:04] (Instrument: Brass, Pitch register:
Low, Tempo: Fast, Duration: 4.0)`. Attributes that are not known are left out rather than guessed.
"""

from __future__ import annotations

from components.vocab import MUSIC_FIELDS, SPEECH_FIELDS


def timestamp(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def span(duration: float) -> str:
    return f"[{timestamp(0)}-{timestamp(duration)}]"


def speech_description(duration: float, transcript: str, attributes: dict[str, str]) -> str:
    """`attributes` maps the paper's field names (Emotion, Gender, …) to words."""
    parts = [f"{name}: {attributes[name]}" for name in SPEECH_FIELDS if attributes.get(name)]
    parts.append(f"Duration: {max(1, round(duration))}s")
    return f"{span(duration)} {transcript.strip()} ({', '.join(parts)})"


def sound_description(duration: float, category: str) -> str:
    return f"{span(duration)} (Audio category: {category}, Duration: {duration:.1f})"


def music_description(duration: float, attributes: dict[str, str]) -> str:
    """`attributes` maps MUSIC_FIELDS to words (instrument family, register, tempo)."""
    parts = [f"{name}: {attributes[name]}" for name in MUSIC_FIELDS if attributes.get(name)]
    return f"{span(duration)} ({', '.join(parts + [f'Duration: {duration:.1f}'])})"
