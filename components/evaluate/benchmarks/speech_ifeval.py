"""Speech-IFEval (kehanlu/Speech-IFEval `data/eval_data/*.jsonl`, checked against the official repository).

JSONL rows with `audio_filepath` (relative to `data/audios/`: pass that directory as the data
root), `instruction`, `instruction_id_list` + `kwargs` (absent in the chain-of-thought file, which
needs an LLM judge), `textual_audio` (the clip as text), `dataset`, `metric`, `label`, `id`.
Filled: `task` "speech", `sub-category` = `dataset`, `choices` [], `answer` = `label` or "",
`difficulty` "medium"; per row `follow_instruction_list` / `follow_all_instructions` as
Speech-IFEval's evaluation_main writes them. IF rate = followed / checked instructions x 100
(Speech-IFEval's "ALL" line, strict mode) plus the prompt-level rate; rows without an
instruction list are answered but not scored (`unscored_rows`); instruction kinds the checkers
do not implement (e.g. `length_constraints:number_sentences`) are not counted and are listed
under `unchecked_instructions`. Text reference (forgetting rate): when a row carries
`reference_response` (the text-only backbone's answer) it is used; otherwise, with
`text_reference=True` and `textual_audio` given, the frozen backbone LLM answers
"Speech Input: {textual_audio}\\n\\n{instruction}" (Speech-IFEval's reference-system prompt)
with no audio. Then `if_rate_text` and `forgetting_rate` = (IF_speech - IF_text) / IF_text
(a ratio; Speech-IFEval's README prints it x 100) are reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.evaluate.benchmarks.base import (
    DEFAULT_DIFFICULTY,
    DEFAULT_TASK,
    PREDICTION_KEY,
    Adapter,
    BenchItem,
    BenchmarkFormatError,
    BenchSet,
    OnBad,
    _Bad,
    _load,
    _pct,
    _require,
    resolve_audio,
)
from components.evaluate.run import TextOnly
from components.evaluate.scorers import INSTRUCTION_CHECKS, check_instruction, forgetting_rate
from components.vocab import SYSTEM

REFERENCE_KEY = "reference_response"
# Speech-IFEval's reference-system prompt (examples/eval_llama3_8B_instruct.py).
TEXT_REFERENCE_PROMPT = "Speech Input: {textual_audio}\n\n{instruction}"


def load_speech_ifeval(path: str | Path, data_root: str | Path, on_bad: OnBad = "error",
                       limit: int | None = None) -> BenchSet:
    """Speech-IFEval JSONL: audio_filepath, instruction, instruction_id_list + kwargs, textual_audio."""

    def parse(i: int, row: dict[str, Any], root: Path, _: bool) -> BenchItem:
        audio = row.get("audio_filepath", row.get("audio"))
        if audio is None:
            raise _Bad("missing 'audio_filepath'")
        instruction = _require(row, "instruction")
        checks = None
        if row.get("instruction_id_list") is not None:
            kinds = _require(row, "instruction_id_list", list)
            kwargs = row.get("kwargs") if row.get("kwargs") is not None else [{} for _ in kinds]
            if not isinstance(kwargs, list) or len(kwargs) != len(kinds):
                raise _Bad(f"'kwargs' must be a list with one entry per instruction id ({len(kinds)})")
            if not all(isinstance(k, str) for k in kinds) or not all(isinstance(k, dict) or k is None for k in kwargs):
                raise _Bad("'instruction_id_list' must hold strings and 'kwargs' objects")
            checks = tuple((k, kw or {}) for k, kw in zip(kinds, kwargs))
            for kind, kw in checks:  # fail at load, not after the model has run
                if kind in INSTRUCTION_CHECKS:
                    missing = [a for a in INSTRUCTION_CHECKS[kind][1] if kw.get(a) is None]
                    if missing:
                        raise _Bad(f"instruction {kind!r} needs kwargs {missing}")
        textual = row.get("textual_audio")
        if textual is not None and not isinstance(textual, str):
            raise _Bad("'textual_audio' must be a string")
        ref = row.get(REFERENCE_KEY)
        if ref is not None and not isinstance(ref, str):
            raise _Bad(f"{REFERENCE_KEY!r} must be a string")
        apath = resolve_audio(root, audio)
        label = row.get("label")
        out = dict(row)
        out.update({"task": DEFAULT_TASK, "sub-category": row.get("dataset") if isinstance(row.get("dataset"), str)
                    else "speech-ifeval", "choices": [], "answer": label if isinstance(label, str) else "",
                    "difficulty": DEFAULT_DIFFICULTY})
        text_prompt = TEXT_REFERENCE_PROMPT.format(textual_audio=textual, instruction=instruction) if textual else None
        return BenchItem(i, audio, apath, instruction, out, checks, text_prompt)

    return _load("speech-ifeval", path, data_root, on_bad, limit, parse)


def follow_list(row: Mapping[str, Any], response: str) -> tuple[list[bool | None], list[str]]:
    """Per instruction of a Speech-IFEval row: followed or not (None = kind not implemented)."""
    kinds = row.get("instruction_id_list") or []
    kwargs = row.get("kwargs") or [{} for _ in kinds]
    if len(kwargs) != len(kinds):
        raise ValueError(f"{len(kinds)} instruction ids but {len(kwargs)} kwargs")
    out: list[bool | None] = []
    unchecked: list[str] = []
    for kind, kw in zip(kinds, kwargs):
        if kind in INSTRUCTION_CHECKS:
            out.append(check_instruction(kind, kw or {}, response))
        else:
            out.append(None)
            unchecked.append(kind)
    return out, unchecked


def _if_scores(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """Instruction- and prompt-level IF rates of the answers under `key` (strict mode)."""
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    prompts = prompts_ok = followed = checked = 0
    unchecked: Counter[str] = Counter()
    for i, row in enumerate(rows):
        if key not in row or not row.get("instruction_id_list"):
            continue
        try:
            results, skipped = follow_list(row, row[key])
        except (ValueError, TypeError) as e:
            raise BenchmarkFormatError(f"row {i}: {e}") from None
        unchecked.update(skipped)
        scored = [(k, r) for k, r in zip(row["instruction_id_list"], results) if r is not None]
        if not scored:
            continue
        prompts += 1
        prompts_ok += all(r for _, r in scored)
        for kind, r in scored:
            per_kind[kind][0] += int(r)
            per_kind[kind][1] += 1
            followed += int(r)
            checked += 1
    return {"if_rate": _pct(followed, checked), "prompt_level": _pct(prompts_ok, prompts),
            "instructions": checked, "prompts": prompts,
            "per_instruction": {k: {"rate": _pct(c, n), "n": n} for k, (c, n) in sorted(per_kind.items())},
            "unchecked_instructions": dict(sorted(unchecked.items()))}


def speech_ifeval_scores(rows: Sequence[Mapping[str, Any]], prediction_key: str) -> dict[str, Any]:
    """The Speech-IFEval part of the report: IF rates, and the forgetting rate when every row has a reference."""
    scored = [r for r in rows if prediction_key in r]
    speech = _if_scores(rows, prediction_key)
    report: dict[str, Any] = dict(speech)
    report["unscored_rows"] = sum(1 for r in scored if not r.get("instruction_id_list"))
    with_ref = [r for r in scored if isinstance(r.get(REFERENCE_KEY), str)]
    report["if_rate_text"] = report["forgetting_rate"] = None
    if with_ref and len(with_ref) == len(scored):
        text = _if_scores(scored, REFERENCE_KEY)
        report["if_rate_text"] = text["if_rate"]
        if text["instructions"] and text["if_rate"] > 0:
            report["forgetting_rate"] = round(forgetting_rate(speech["if_rate"], text["if_rate"]), 4)
    elif with_ref:
        report["reference_note"] = f"only {len(with_ref)} of {len(scored)} rows carry {REFERENCE_KEY!r}; no forgetting rate"
    return report


def _speech_ifeval_extras(model: Any, done: list[tuple[BenchItem, dict[str, Any]]], text_reference: bool,
                          max_new_tokens: int, batch_size: int) -> None:
    """Text-only reference answers (when wanted and possible) and the per-row follow lists."""
    need = [(it, r) for it, r in done if REFERENCE_KEY not in r]
    if text_reference and need and all(it.text_prompt for it, _ in need):
        text = TextOnly.of(model).generate([it.text_prompt for it, _ in need], system=SYSTEM,
                                           max_new_tokens=max_new_tokens, batch_size=batch_size)
        for (_, r), answer in zip(need, text):
            r[REFERENCE_KEY] = answer
    for _, r in done:
        if r.get("instruction_id_list"):
            follows, _ = follow_list(r, r[PREDICTION_KEY])
            r["follow_instruction_list"] = follows
            r["follow_all_instructions"] = all(f for f in follows if f is not None) and any(f is not None for f in follows)


ADAPTER = Adapter("speech-ifeval", load_speech_ifeval, speech_ifeval_scores, max_new_tokens=256)
