"""Evaluation: benchmark scorers (MMAU, classification, WER/CER, instruction following)."""

from components.evaluate.mmau import MMAUFormatError, load_results, score_mmau
from components.evaluate.scorers import (
    accuracy,
    cer,
    check_instruction,
    check_instructions,
    forgetting_rate,
    if_rate,
    string_match,
    wer,
)

__all__ = [
    "MMAUFormatError",
    "accuracy",
    "cer",
    "check_instruction",
    "check_instructions",
    "forgetting_rate",
    "if_rate",
    "load_results",
    "score_mmau",
    "string_match",
    "wer",
]
