"""External benchmarks from a local data root: MMAU, Dynamic-SUPERB, Speech-IFEval.

One adapter per layout turns a benchmark file into `BenchItem`s (lhotse style: typed loaders,
one common item type): `mmau`, `dynamic_superb`, `speech_ifeval`, each documenting its layout
(checked against the official repositories) and scoring its own report fields. `base` holds
the row types and the rules for audio paths and bad rows; `runner.run_benchmark` asks the model
every item, writes a results file in the MMAU results layout and scores it with
`runner.score_results`, which reads nothing but the written rows.

This module is the registry and the public API: import from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from components.evaluate.benchmarks.base import (
    DEFAULT_DIFFICULTY,
    DEFAULT_TASK,
    PREDICTION_KEY,
    BenchItem,
    BenchmarkFormatError,
    BenchSet,
    OnBad,
    read_rows,
    resolve_audio,
)
from components.evaluate.benchmarks.dynamic_superb import load_dynamic_superb
from components.evaluate.benchmarks.mmau import load_mmau
from components.evaluate.benchmarks.runner import ADAPTERS, MAX_NEW_TOKENS, run_benchmark, score_results
from components.evaluate.benchmarks.speech_ifeval import (
    REFERENCE_KEY,
    TEXT_REFERENCE_PROMPT,
    follow_list,
    load_speech_ifeval,
)

BENCHMARKS = tuple(ADAPTERS)
Benchmark = Literal["mmau", "dynamic-superb", "speech-ifeval"]
LOADERS: dict[str, Callable[..., BenchSet]] = {name: a.load for name, a in ADAPTERS.items()}

__all__ = [
    "ADAPTERS",
    "BENCHMARKS",
    "DEFAULT_DIFFICULTY",
    "DEFAULT_TASK",
    "LOADERS",
    "MAX_NEW_TOKENS",
    "PREDICTION_KEY",
    "REFERENCE_KEY",
    "TEXT_REFERENCE_PROMPT",
    "BenchItem",
    "BenchSet",
    "Benchmark",
    "BenchmarkFormatError",
    "OnBad",
    "follow_list",
    "load_dynamic_superb",
    "load_mmau",
    "load_speech_ifeval",
    "read_rows",
    "resolve_audio",
    "run_benchmark",
    "score_results",
]
