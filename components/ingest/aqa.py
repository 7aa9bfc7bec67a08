"""Adapter: DeSTA-AQA5M-format JSONL (`messages[*].audios[*].audio` relative to a data root)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from components.ingest.candidates import BAD_ROW, MISSING, OUTSIDE_ROOT, Candidate, within_root


def prepare_aqa_jsonl(jsonl: Path, data_root: Path) -> list[Candidate]:
    """One candidate per distinct audio reference in the rows; bad rows and escapes are rejected."""
    return list(iter_aqa_jsonl(jsonl, data_root))


def iter_aqa_jsonl(jsonl: Path, data_root: Path) -> Iterator[Candidate]:
    """`prepare_aqa_jsonl` one candidate at a time, reading the file as it goes (5M rows need not fit)."""
    seen: set[str] = set()
    with jsonl.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{jsonl}:{n}"
            try:
                row = json.loads(line)
                audios = [a for m in row["messages"] for a in m.get("audios", [])]
                dataset = str(row.get("dataset") or jsonl.stem)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                yield Candidate(where, jsonl.stem, reject=BAD_ROW, detail=f"{type(err).__name__}: {err}")
                continue
            for audio in audios:
                ref = audio.get("audio") if isinstance(audio, dict) else None
                if not isinstance(ref, str) or not ref:
                    yield Candidate(where, dataset, reject=BAD_ROW, detail="audio entry without a path")
                    continue
                if ref in seen:  # several instructions per clip share one audio file: one input
                    continue
                seen.add(ref)
                target = within_root(ref, data_root)
                if target is None:
                    yield Candidate(ref, dataset, reject=OUTSIDE_ROOT, detail=f"{where}: escapes {data_root}")
                elif not target.exists():
                    yield Candidate(ref, dataset, reject=MISSING, detail=f"{where}: no such file")
                else:
                    meta = {"transcript": audio["text"]} if audio.get("text") else {}
                    yield Candidate(ref, dataset, path=target, metadata=meta)
