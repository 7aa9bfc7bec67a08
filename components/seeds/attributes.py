"""A speech clip's attributes as a listener hears them: from its signal, in the paper's words.

Pitch (median F0), volume (voiced RMS, dBFS) and speaking speed (syllables per voiced second) are
always measured; each maps to five words by edges in equal steps of what a listener hears over the
corpus's range (fitted per run, or fixed in params to keep the words' meaning across retrains).
Metadata that names one of these (espeak's settings, a corpus's own labels) is not used for it:
espeak's pitch setting is relative to its voice, so "High" on a low male voice and on a high female
voice are different sounds. Where the metadata gives a word, the row keeps it beside the measured one
and the report counts the agreement.
Gender and emotion come from metadata when given (a speaker's gender is not one measurement); else
gender is read from F0.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from components import measure as A
from components.config import SeedsConfig
from components.vocab import LEVELS, SPEEDS

WORDS = {"Pitch": LEVELS, "Volume": LEVELS, "Speaking speed": SPEEDS}
UNITS = {"Pitch": "Hz (median F0)", "Volume": "dBFS (voiced RMS)", "Speaking speed": "syllables per voiced second"}
_META_KEYS = {"Pitch": ("pitch", "pitch"), "Volume": ("volume", "volume"), "Speaking speed": ("speaking_speed", "speed")}


def signal_values(m: A.Measured, transcript: str) -> dict[str, float | None]:
    """The three measurements a speech clip's words come from (None where the signal gives none)."""
    return {"Pitch": m.pitch_hz, "Volume": m.loudness_db,
            "Speaking speed": A.syllables_per_second(transcript, m.voiced_seconds)}


def fixed_edges(cfg: SeedsConfig) -> dict[str, list[float] | None]:
    return {"Pitch": cfg.pitch_hz_edges, "Volume": cfg.volume_dbfs_edges, "Speaking speed": cfg.speed_sps_edges}


# The scale each measurement is heard on: F0 and speaking rate by ratios (log), loudness in dB already.
_SCALE = {"Pitch": (np.log, np.exp), "Volume": (lambda x: x, lambda x: x), "Speaking speed": (np.log, np.exp)}


class EdgeFitter:
    """Collects the speech clips' measurements (8 bytes each) and fits each attribute's edges: equal steps
    on the scale a listener hears (semitones, dB, rate ratios) between the corpus's 5th and 95th
    percentiles, unless params fix them. Equal steps, not equal shares: one speaker's many clips (the
    asterisk prompts) would otherwise split a 20 Hz, 3 dB range into five words no one hears apart."""

    def __init__(self) -> None:
        self.values = {name: array("d") for name in WORDS}

    def add(self, values: dict[str, float | None]) -> None:
        for name, v in values.items():
            if v is not None:
                self.values[name].append(v)

    def edges(self, fixed: dict[str, list[float] | None]) -> dict[str, list[float]]:
        out = {}
        for name, words in WORDS.items():
            if fixed[name] is not None:
                out[name] = list(fixed[name])
                continue
            xs = np.frombuffer(self.values[name], dtype=np.float64)
            to, back = _SCALE[name]
            lo, hi = np.percentile(to(xs), [5, 95]) if xs.size else (0.0, 0.0)
            steps = lo + (hi - lo) * np.arange(1, len(words)) / len(words)
            out[name] = [round(float(e), 3) for e in back(steps)] if xs.size else []
        return out


def metadata_words(meta: dict[str, Any]) -> dict[str, str]:
    """The words a clip's metadata gives for the measured attributes (its own keys, or espeak's settings)."""
    synth = meta.get("synth") or {}
    out = {name: meta.get(key) or synth.get(synth_key) for name, (key, synth_key) in _META_KEYS.items()}
    return {name: str(word) for name, word in out.items() if word}


def attributes(meta: dict[str, Any], m: A.Measured, transcript: str, edges: dict[str, list[float]]) -> dict[str, dict]:
    """Paper field -> {"value", "source"}, plus the other source's word where there is one ("metadata" beside a
    measured word, "signal" beside a metadata gender), for the report's agreement."""
    out: dict[str, dict] = {}
    if meta.get("emotion"):
        out["Emotion"] = {"value": str(meta["emotion"]).capitalize(), "source": "metadata"}
    gender = meta.get("gender")
    if gender:
        gender = {"m": "Male", "f": "Female"}.get(str(gender).lower()[:1], str(gender))
        out["Gender"] = {"value": gender, "source": "metadata"}
        if A.gender_from_pitch(m.pitch_hz):
            out["Gender"]["signal"] = A.gender_from_pitch(m.pitch_hz)
    elif A.gender_from_pitch(m.pitch_hz):
        out["Gender"] = {"value": A.gender_from_pitch(m.pitch_hz), "source": "signal"}
    given = metadata_words(meta)
    for name, value in signal_values(m, transcript).items():
        if value is None:
            continue
        out[name] = {"value": A.bucket(value, edges[name], WORDS[name]), "source": "signal"}
        if given.get(name):
            out[name]["metadata"] = given[name]
    return out
