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
from dataclasses import dataclass
from typing import Any

import numpy as np

from components import measure as A
from components.config import SeedsConfig
from components.vocab import LEVELS, SPEEDS


@dataclass(frozen=True)
class Scale:
    """How one measured attribute is named: its words, unit, the params field that may fix its edges, the
    metadata keys that may name it (a corpus's own, espeak's setting), and whether it is heard by ratios
    (F0, speaking rate: edges in equal log steps) or already on a heard scale (dB)."""

    words: tuple[str, ...]
    unit: str
    edges_param: str
    meta_key: str
    synth_key: str
    by_ratio: bool


SCALES = {
    "Pitch": Scale(tuple(LEVELS), "Hz (median F0)", "pitch_hz_edges", "pitch", "pitch", True),
    "Volume": Scale(tuple(LEVELS), "dBFS (voiced RMS)", "volume_dbfs_edges", "volume", "volume", False),
    "Speaking speed": Scale(tuple(SPEEDS), "syllables per voiced second", "speed_sps_edges", "speaking_speed", "speed", True),
}


def signal_values(m: A.Measured, transcript: str) -> dict[str, float | None]:
    """The three measurements a speech clip's words come from (None where the signal gives none)."""
    return {"Pitch": m.pitch_hz, "Volume": m.loudness_db,
            "Speaking speed": A.syllables_per_second(transcript, m.voiced_seconds)}


def fixed_edges(cfg: SeedsConfig) -> dict[str, list[float] | None]:
    return {name: getattr(cfg, s.edges_param) for name, s in SCALES.items()}


class EdgeFitter:
    """Collects the speech clips' measurements (8 bytes each) and fits each attribute's edges: equal steps
    on the scale a listener hears (semitones, dB, rate ratios) between the corpus's 5th and 95th
    percentiles, unless params fix them. Equal steps, not equal shares: one speaker's many clips (the
    asterisk prompts) would otherwise split a 20 Hz, 3 dB range into five words no one hears apart."""

    def __init__(self) -> None:
        self.values = {name: array("d") for name in SCALES}

    def add(self, values: dict[str, float | None]) -> None:
        for name, v in values.items():
            if v is not None:
                self.values[name].append(v)

    def edges(self, fixed: dict[str, list[float] | None]) -> dict[str, list[float]]:
        out = {}
        for name, scale in SCALES.items():
            if fixed[name] is not None:
                out[name] = list(fixed[name])
                continue
            xs = np.frombuffer(self.values[name], dtype=np.float64)
            if not xs.size:
                out[name] = []
                continue
            heard = np.log(xs) if scale.by_ratio else xs
            lo, hi = np.percentile(heard, [5, 95])
            steps = lo + (hi - lo) * np.arange(1, len(scale.words)) / len(scale.words)
            out[name] = [round(float(e), 3) for e in (np.exp(steps) if scale.by_ratio else steps)]
        return out


def metadata_words(meta: dict[str, Any]) -> dict[str, str]:
    """The words a clip's metadata gives for the measured attributes (its own keys, or espeak's settings)."""
    synth = meta.get("synth") or {}
    out = {name: meta.get(s.meta_key) or synth.get(s.synth_key) for name, s in SCALES.items()}
    return {name: str(word) for name, word in out.items() if word}


def attributes(meta: dict[str, Any], m: A.Measured, values: dict[str, float | None],
               edges: dict[str, list[float]]) -> dict[str, dict]:
    """Paper field -> {"value", "source"} from a clip's metadata, measurement and `signal_values`, plus the
    other source's word where there is one ("metadata" beside a measured word, "signal" beside a metadata
    gender), for the report's agreement."""
    out: dict[str, dict] = {}
    if meta.get("emotion"):
        out["Emotion"] = {"value": str(meta["emotion"]).capitalize(), "source": "metadata"}
    heard_gender = A.gender_from_pitch(m.pitch_hz)
    gender = meta.get("gender")
    if gender:
        gender = {"m": "Male", "f": "Female"}.get(str(gender).lower()[:1], str(gender))
        out["Gender"] = {"value": gender, "source": "metadata"} | ({"signal": heard_gender} if heard_gender else {})
    elif heard_gender:
        out["Gender"] = {"value": heard_gender, "source": "signal"}
    given = metadata_words(meta)
    for name, value in values.items():
        if value is None:
            continue
        out[name] = {"value": A.bucket(value, edges[name], SCALES[name].words), "source": "signal"}
        if given.get(name):
            out[name]["metadata"] = given[name]
    return out
