"""Ask the model every item of a `BenchSet`, write the results file, and score it.

The results file is in the MMAU results layout: a JSON array of each input row +
`model_prediction` (with `task`, `difficulty`, `sub-category`, `choices` and `answer` filled in
by the non-MMAU adapters). `score_results` reads nothing but those rows, so a results file
written by hand scores the same way. All prompts use the paper's evaluation system prompt
`components.vocab.SYSTEM`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic import atomic_write_text
from components.evaluate.benchmarks import dynamic_superb, mmau, speech_ifeval
from components.evaluate.benchmarks.base import (
    PREDICTION_KEY,
    BenchItem,
    BenchmarkFormatError,
    BenchSet,
    OnBad,
    _Bad,
    _row_name,
)
from components.evaluate.benchmarks.speech_ifeval import _speech_ifeval_extras
from components.evaluate.run import audio_messages

# The registry: every benchmark's adapter, by name (the order `desta benchmark` lists them in).
ADAPTERS = {a.name: a for a in (mmau.ADAPTER, dynamic_superb.ADAPTER, speech_ifeval.ADAPTER)}
MAX_NEW_TOKENS = {name: a.max_new_tokens for name, a in ADAPTERS.items()}


def score_results(benchmark: str, rows: Sequence[Mapping[str, Any]], prediction_key: str = PREDICTION_KEY) -> dict[str, Any]:
    """Score a results file's rows (as written by `run_benchmark`, or by hand) for `benchmark`.

    Rows without the prediction key are not scored and counted under `no_prediction`.
    """
    if benchmark not in ADAPTERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; one of {tuple(ADAPTERS)}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise BenchmarkFormatError(f"row {i}: expected a JSON object, got {type(row).__name__}")
        if prediction_key in row and not isinstance(row[prediction_key], str):
            raise BenchmarkFormatError(f"row {i}: {prediction_key!r} must be a string")
    scored = [r for r in rows if prediction_key in r]
    if not scored:
        raise BenchmarkFormatError(f"no row has a {prediction_key!r} field; nothing to score")
    report: dict[str, Any] = {"benchmark": benchmark, "rows": len(scored), "no_prediction": len(rows) - len(scored)}
    report.update(ADAPTERS[benchmark].score(rows, prediction_key))
    return report


def _read_clip(item: BenchItem) -> np.ndarray:
    """The item's decoded clip; a decoder failure is a bad row."""
    from components.audio import load_audio

    try:
        return load_audio(item.path).numpy()
    except Exception as e:  # noqa: BLE001 -- any decoder failure names the row
        raise _Bad(f"cannot decode audio {item.audio!r}: {e}") from e


def _chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    """`seq` in consecutive slices of `n`."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def run_benchmark(model: Any, bench: BenchSet, out: str | Path, *, batch_size: int = 8,
                  max_new_tokens: int | None = None, on_bad: OnBad = "error", text_reference: bool = True,
                  show_progress: bool = True) -> dict[str, Any]:
    """Ask `model` every item, write the MMAU-layout results file `out` atomically, return the scores.

    The report adds `results` (the path), `skipped_rows` (bad rows left out, with reasons) and
    `total_rows` to `score_results` of the written rows.
    """
    from components.progress import progress_bar

    out = Path(out)
    max_new = max_new_tokens or MAX_NEW_TOKENS[bench.benchmark]
    skipped = list(bench.skipped)
    done: list[tuple[BenchItem, dict[str, Any]]] = []
    with progress_bar(f"{bench.benchmark}", len(bench.items), enabled=show_progress, unit="rows") as advance:
        for chunk in _chunks(bench.items, batch_size):
            wavs, ok = [], []
            for item in chunk:
                try:
                    wavs.append(_read_clip(item))
                    ok.append(item)
                except _Bad as e:
                    if on_bad == "error":
                        raise BenchmarkFormatError(f"{bench.source}: {_row_name(item.index, item.row)}: {e}") from None
                    skipped.append({"row": item.index, "id": item.row.get("id"), "reason": str(e)})
            if ok:
                preds = model.generate([[w] for w in wavs], [audio_messages(it.prompt, it.audio, None) for it in ok],
                                       max_new_tokens=max_new, batch_size=batch_size, data_root=bench.data_root)
                for it, pred in zip(ok, preds):
                    done.append((it, {**it.row, PREDICTION_KEY: pred}))
            advance(len(chunk))

    if not done:
        raise BenchmarkFormatError(f"{bench.source}: no row could be run ({len(skipped)} skipped)")
    if bench.benchmark == "speech-ifeval":
        _speech_ifeval_extras(model, done, text_reference, max_new, batch_size)
    rows = [r for _, r in done]
    atomic_write_text(out, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    report = score_results(bench.benchmark, rows)
    skipped.sort(key=lambda s: s["row"])
    report.update({"results": str(out), "total_rows": bench.total_rows, "skipped": len(skipped),
                   "skipped_rows": skipped})
    return report
