"""Transcript normalisation and error rates, shared by `desta seeds` (Whisper's WER on known
transcripts) and `desta evaluate`. Units: fractions (jiwer's convention, can exceed 1)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

import jiwer


def strip_punctuation(text: str, replacement: str = "") -> str:
    """Every Unicode punctuation character replaced (default: dropped)."""
    return "".join(replacement if unicodedata.category(c).startswith("P") else c for c in text)


_APOSTROPHES = "'\u2019\u02bc"


def normalize_transcript(text: str) -> str:
    """Transcript normalisation for WER/CER.

    NFKC, casefold; apostrophes are deleted so contractions stay one word ("Don't" -> "dont");
    every other Unicode punctuation character becomes a space ("well-known" -> "well known",
    "3.5" -> "3 5"); whitespace is collapsed and stripped. Numbers are not spelled out.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join("" if c in _APOSTROPHES else c for c in text)
    return " ".join(strip_punctuation(text, " ").split())


def distinct_readings(texts: Iterable[str]) -> dict[str, str]:
    """One spelling (the first in sorted order) per way the non-empty `texts` read, keyed by
    `normalize_transcript`: "Rear Center." and "Rear center." are one sentence."""
    out: dict[str, str] = {}
    for t in sorted({t for t in texts if t}):
        out.setdefault(normalize_transcript(t), t)
    return out


def _normalised_pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    r = [normalize_transcript(x) for x in refs]
    h = [normalize_transcript(x) for x in hyps]
    if not any(r):
        raise ValueError("every reference is empty after normalisation; the error rate is undefined")
    return r, h


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate (total edits / total reference words) after `normalize_transcript`."""
    r, h = _normalised_pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate after `normalize_transcript`; single spaces count as characters."""
    r, h = _normalised_pairs(refs, hyps)
    return float(jiwer.cer(r, h))
