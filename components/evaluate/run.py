"""`desta evaluate`: held-out attribute questions, transcript WER and instruction following.

Reported side by side: the trained model with audio, and the frozen backbone on the same
questions with no audio (the text-only prior), each by MMAU string match and by forced choice
(the option with the highest log-likelihood), with the chance level per attribute.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import figures
from components.atomic import atomic_write_text, clear_temps
from components.evaluate.ask import Asker
from components.evaluate.ifeval import IF_PROMPTS, if_check, if_settled
from components.evaluate.mcq import build_mcq
from components.evaluate.mmau import score_mmau
from components.evaluate.outputs import (ACCURACY_FIGURE, CONFUSION_FIGURES, CONFUSIONS, FIGURES, METRICS,
                                         PLOT_ACCURACY, PREDICTIONS)
from components.evaluate.scorers import forgetting_rate, string_match
from components.progress import progress_bar
from components.text import wer
from components.vocab import INSTRUMENT_FAMILIES, LEVELS, MCQ_SUFFIX, SYSTEM, mcq_prompt

ORDER = {"Gender": ("Male", "Female"), "Pitch": tuple(LEVELS), "Instrument": tuple(INSTRUMENT_FAMILIES)}
Decode = Callable[[np.ndarray], list[str]]  # Whisper encoder output (N, 1500, d) -> raw transcripts


def audio_messages(prompt: str, ref: str, transcript: str | None, system: str = SYSTEM) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"<|AUDIO|>\n{prompt}", "audios": [{"audio": ref, "text": transcript}]}]


class TextOnly:
    """The frozen backbone LLM with no audio: greedy answers and option log-likelihoods."""

    def __init__(self, llm: torch.nn.Module, tokenizer: Any, bf16: bool = True) -> None:
        self.llm, self.tok, self.bf16 = llm, tokenizer, bf16

    @classmethod
    def of(cls, model: Any) -> TextOnly:
        """The backbone of a DeSTA model, at the model's precision."""
        return cls(model.llm, model.tokenizer, bf16=model.precision == "bf16")

    def _context(self, system: str, prompt: str) -> str:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], system: str = SYSTEM, max_new_tokens: int = 32,
                 batch_size: int = 16) -> list[str]:
        out: list[str] = []
        side = self.tok.padding_side
        self.tok.padding_side = "left"
        try:
            for b in range(0, len(prompts), batch_size):
                texts = [self._context(system, p) for p in prompts[b : b + batch_size]]
                enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                    ids = self.llm.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                            pad_token_id=self.tok.pad_token_id)
                out += [t.strip() for t in self.tok.batch_decode(ids[:, enc.input_ids.shape[1]:], skip_special_tokens=True)]
        finally:
            self.tok.padding_side = side
        return out

    @torch.inference_mode()
    def logprobs(self, prompts: Sequence[str], responses: Sequence[str], system: str = SYSTEM,
                 batch_size: int = 32) -> list[float]:
        """Summed log-probability of each response after its prompt (right-padded batches)."""
        out: list[float] = []
        for b in range(0, len(prompts), batch_size):
            ctxs = [self.tok(self._context(system, p), add_special_tokens=False).input_ids for p in prompts[b : b + batch_size]]
            resps = [self.tok(r, add_special_tokens=False).input_ids for r in responses[b : b + batch_size]]
            width = max(len(c) + len(r) for c, r in zip(ctxs, resps))
            ids = torch.full((len(ctxs), width), self.tok.pad_token_id)
            mask = torch.zeros((len(ctxs), width), dtype=torch.long)
            for i, (c, r) in enumerate(zip(ctxs, resps)):
                ids[i, : len(c) + len(r)] = torch.tensor(c + r)
                mask[i, : len(c) + len(r)] = 1
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                logp = torch.log_softmax(self.llm(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for i, (c, r) in enumerate(zip(ctxs, resps)):
                pos = torch.arange(len(c) - 1, len(c) + len(r) - 1)
                out.append(float(logp[i, pos, torch.tensor(r)].sum()))
        return out


def _sample(questions: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """At most `limit` questions, whole clips at a time in a fixed hash order (not the corpus order,
    which would take one dataset first); a clip's questions stay adjacent."""
    if not limit or len(questions) <= limit:
        return questions
    order = sorted(questions, key=lambda q: (hashlib.sha256(q["audio"].encode()).hexdigest(), q["id"]))
    return order[:limit]


def _forced_choice(scores: list[float], choices: list[str]) -> str:
    return choices[max(range(len(choices)), key=lambda i: scores[i])]


def _by_sub(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        for sub in (r["sub-category"], "overall"):
            acc[sub][0] += int(r[key])
            acc[sub][1] += 1
    return {k: round(100.0 * c / n, 2) for k, (c, n) in sorted(acc.items())}


def _majority(questions: list[dict[str, Any]]) -> dict[str, float]:
    """Per sub-category, the score of one fixed answer, the most common one (% of its questions); overall,
    of one such answer a sub-category. A skewed split (most held-out clips "Very high" in volume) lets a
    model that always says one word beat chance without hearing anything: judge it against this too."""
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for q in questions:
        answers[q["sub-category"]][q["answer"]] += 1
    top = {k: c.most_common(1)[0][1] for k, c in answers.items()}
    out = {k: round(100.0 * top[k] / sum(c.values()), 2) for k, c in answers.items()}
    return dict(sorted(out.items())) | {"overall": round(100.0 * sum(top.values()) / max(len(questions), 1), 2)}


def evaluate_trained(prof: Any, model_dir: Path, seeds_dir: Path, out_dir: Path,
                     show_progress: bool = True) -> dict[str, Any]:
    """`evaluate_model` on a trained model dir as the profile deploys it: transcripts from the model's Whisper
    on the engine the seeds were transcribed with (another engine: the HF decoder is not loaded at all)."""
    from components.model.desta import DestaModel
    from components.model.transcribe import make_transcriber
    from components.records import iter_seeds

    hf = prof.seeds.engine == "hf"
    model = DestaModel.from_pretrained(model_dir, with_decoder=hf)
    decode = None if hf else make_transcriber(prof.seeds.engine, model.spec.whisper, 8).decode_states
    return evaluate_model(model, iter_seeds(seeds_dir), Path(prof.data.root), out_dir, prof.evaluate.max_questions,
                          prof.evaluate.batch_size, show_progress=show_progress, decode=decode)


def evaluate_model(model: Any, seeds: Iterable[dict[str, Any]], data_root: Path, out_dir: Path,
                   max_questions: int | None = None, batch_size: int = 16, show_progress: bool = True,
                   decode: Decode | None = None) -> dict[str, Any]:
    """Run every check on the test split; writes metrics, predictions and plot data; returns metrics.
    Transcripts: Whisper's decoder on the same encoder pass the connector reads (`decode`: another
    engine's decoder over the same weights, e.g. CTranslate2's; default the model's own HF decoder)."""
    test = [s for s in seeds if s.get("split") == "test"]  # `seeds` may stream: only the held-out rows are kept
    questions = _sample(build_mcq(test), max_questions)
    if not questions:
        raise ValueError("no held-out questions: the seeds have no test split (run `desta seeds`)")
    refs = list(dict.fromkeys(s["audio"] for s in test))
    # Rows through a model: clips heard, questions (model and prior), IF (audio and text).
    total = len(refs) + 2 * len(questions) + 2 * len(test)
    asker = Asker(model, data_root, batch_size)
    with progress_bar("evaluate", total, enabled=show_progress, unit="rows") as advance:
        # The model path as deployed: each clip's transcript comes from Whisper, never from the corpus.
        heard = asker.hear(refs, lambda n: advance(n, phase="clips"), decode)
        prompts = [mcq_prompt(q) for q in questions]
        msgs = [audio_messages(p, q["audio"], heard[q["audio"]]) for p, q in zip(prompts, questions)]
        # A clip's shared context once for its questions; each answer and its options' scores from one cache.
        preds, scores = asker.ask(asker.audio_rows(msgs), 16,
                                  options=[asker.option_ids(q["choices"], eos=True) for q in questions],
                                  advance=advance, phase="questions")
        priors, prior_scores = asker.ask(asker.text_rows(SYSTEM, prompts), 32,
                                         options=[asker.option_ids(q["choices"], eos=False) for q in questions],
                                         advance=advance, phase="prior questions")
        if_audio, if_text = _instruction_following(asker, test, heard, advance)
    for q, pred, prior, sc, ps in zip(questions, preds, priors, scores, prior_scores):
        q.update(model_prediction=pred, prior_prediction=prior, heard=heard[q["audio"]],
                 forced_choice=_forced_choice(sc, q["choices"]), prior_forced_choice=_forced_choice(ps, q["choices"]))
        q["match"] = string_match(q["answer"], pred, q["choices"])
        q["prior_match"] = string_match(q["answer"], prior, q["choices"])
        q["fc_correct"] = q["forced_choice"] == q["answer"]
        q["prior_fc_correct"] = q["prior_forced_choice"] == q["answer"]

    mmau = score_mmau(questions)
    chance = {}
    for q in questions:
        chance[q["sub-category"]] = q["chance"]
    chance["overall"] = round(sum(q["chance"] for q in questions) / len(questions), 2)
    per_attr = {
        "string_match": _by_sub(questions, "match"),
        "forced_choice": _by_sub(questions, "fc_correct"),
        "prior_string_match": _by_sub(questions, "prior_match"),
        "prior_forced_choice": _by_sub(questions, "prior_fc_correct"),
        "chance": dict(sorted(chance.items())),
        "majority": _majority(questions),
        "questions": dict(sorted(Counter(q["sub-category"] for q in questions).items())) | {"overall": len(questions)},
    }

    speech = [s for s in test if s["kind"] == "speech" and s.get("transcript")]
    transcript_wer = wer([s["transcript"] for s in speech], [heard[s["audio"]] for s in speech]) if speech else None

    forgetting = forgetting_rate(if_audio, if_text) if if_text else None

    metrics = {
        "mcq_accuracy": per_attr["string_match"]["overall"],
        "mcq_forced_choice_accuracy": per_attr["forced_choice"]["overall"],
        "prior_mcq_accuracy": per_attr["prior_string_match"]["overall"],
        "prior_forced_choice_accuracy": per_attr["prior_forced_choice"]["overall"],
        "chance": chance["overall"],
        "questions": len(questions),
        "per_attribute": per_attr,
        "mmau": mmau,
        "transcript_wer": round(transcript_wer, 4) if transcript_wer is not None else None,
        "if_rate_audio": round(if_audio, 2),
        "if_rate_text": round(if_text, 2),
        "forgetting_rate": round(forgetting, 4) if forgetting is not None else None,
    }
    _write_outputs(out_dir, metrics, questions)
    return metrics


def _instruction_following(asker: Asker, test: list[dict[str, Any]], heard: dict[str, str],
                           advance: Callable[..., None]) -> tuple[float, float]:
    """IF rate with the audio vs with the same content as text (the seed description) to the backbone.
    An answer stops as soon as its verdict is settled (ifeval.if_settled): the rate is the same."""
    items = [(s, IF_PROMPTS[i % len(IF_PROMPTS)]) for i, s in enumerate(test)]
    if not items:
        return 0.0, 0.0
    msgs = [audio_messages(p["prompt"], s["audio"], heard[s["audio"]]) for s, p in items]
    texts = [f"{s['seed_description']}\n{p['prompt']}" for s, p in items]

    def settled(row: int, text: str) -> bool:
        return if_settled(items[row][1], text)

    audio_out, _ = asker.ask(asker.audio_rows(msgs), 64, settled=settled, advance=advance, phase="IF audio")
    text_out, _ = asker.ask(asker.text_rows(SYSTEM, texts), 64, settled=settled, advance=advance, phase="IF text")
    a = sum(if_check(p, r) for (_, p), r in zip(items, audio_out)) / len(items)
    t = sum(if_check(p, r) for (_, p), r in zip(items, text_out)) / len(items)
    return 100.0 * a, 100.0 * t


def _write_outputs(out_dir: Path, metrics: dict[str, Any], questions: list[dict[str, Any]]) -> None:
    """metrics.json last, and the old one gone first: present means this run's outputs are all there."""
    for d in (out_dir, out_dir / "plots", out_dir / FIGURES):
        clear_temps(d)  # a killed run's
    (out_dir / METRICS).unlink(missing_ok=True)
    atomic_write_text(out_dir / PREDICTIONS, "".join(json.dumps(q, sort_keys=True) + "\n" for q in questions))
    per = metrics["per_attribute"]
    bars = [{"attribute": k, "string_match": per["string_match"][k], "forced_choice": per["forced_choice"][k],
             "prior_forced_choice": per["prior_forced_choice"][k], "chance": per["chance"].get(k)}
            for k in per["string_match"]]
    atomic_write_text(out_dir / PLOT_ACCURACY, json.dumps(bars, indent=2) + "\n")
    figures.accuracy_bars(bars, out_dir / ACCURACY_FIGURE)
    for attribute, name in CONFUSIONS.items():
        pairs = [(q["answer"], q["forced_choice"]) for q in questions if q["sub-category"] == attribute]
        records = [{"actual": a, "predicted": p} for a, p in pairs]
        atomic_write_text(out_dir / name, json.dumps(records, indent=2) + "\n")
        figures.confusion(pairs, f"{attribute}: held-out forced choice", out_dir / CONFUSION_FIGURES[attribute],
                          ORDER[attribute])
    atomic_write_text(out_dir / METRICS, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


__all__ = ["evaluate_model", "MCQ_SUFFIX"]
