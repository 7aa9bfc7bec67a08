"""`desta evaluate` end to end on a real (untrained) tiny DeSTA model and real clips: every output
written, batched forced choice equal to one-question-at-a-time scoring, transcripts from Whisper
(never from the corpus), and the CLI writing DVC metrics/plots."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from components.cli import app
from components.config import apply_overrides, load_params
from components.evaluate.mcq import build_mcq
from components.evaluate.run import (
    CONFUSIONS,
    FIGURES,
    METRICS,
    PLOT_ACCURACY,
    PREDICTIONS,
    TextOnly,
    audio_messages,
    evaluate_model,
)
from components.ingest.run import MANIFEST
from components.records import read_jsonl
from components.model import DestaModel, DestaSpec
from components.vocab import mcq_prompt
from tests.components.model.realdata import build_corpus

SOUNDS = ("bell", "camera-shutter", "complete", "message", "dialog-warning")


def heldout_seeds(root: Path, n_speech: int) -> list[dict]:
    """Ingests real clips under `root`; test-split seed rows over them."""
    build_corpus(root, n_speech=n_speech, sounds=SOUNDS)
    seeds = []
    for i, clip in enumerate(read_jsonl(root / "ingest" / MANIFEST)):
        md = clip["metadata"]
        speech = md.get("kind") == "speech"
        attrs = ({"Gender": {"value": "Female"}, "Pitch": {"value": ["Low", "Medium", "High"][i % 3]},
                  "Speaking speed": {"value": "Slow"}, "Volume": {"value": "High"}} if speech
                 else {"Audio category": {"value": md["category"]}})
        seeds.append({"id": clip["id"], "audio": f"ingest/{clip['shard']}/{clip['id']}.flac", "dataset": "t",
                      "kind": "speech" if speech else "sound", "transcript": md.get("transcript"),
                      "attributes": attrs, "split": "test",
                      "seed_description": md.get("transcript") or md["category"]})
    return seeds


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A data root with ingested real clips and test-split seed rows over them."""
    root = tmp_path_factory.mktemp("eval-data")
    return root, heldout_seeds(root, n_speech=4)


@pytest.fixture(scope="module")
def model(repo: Path, embedded_models) -> DestaModel:
    torch.manual_seed(0)
    return DestaModel.from_backbones(DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"]))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, heldout, model: DestaModel) -> tuple[Path, dict]:
    """One full evaluation (every question) shared by the tests below: it is the slow part. Also returns
    what it printed on stderr (the progress bar)."""
    root, seeds = heldout
    out = tmp_path_factory.mktemp("eval-out")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        metrics = evaluate_model(model, seeds, root, out, max_questions=None, batch_size=8)
    return out, metrics, err.getvalue()


def test_evaluate_model_outputs_and_batched_scoring(evaluated, heldout, model: DestaModel) -> None:
    root, seeds = heldout
    out, metrics, _ = evaluated

    questions = build_mcq(seeds)
    preds = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    assert metrics["questions"] == len(preds) == len(questions) >= 20
    subs = {p["sub-category"] for p in preds}
    assert subs == {"Gender", "Pitch", "Speaking speed", "Volume", "What was said", "Sound category"}
    for p in preds:
        assert p["forced_choice"] in p["choices"] and p["prior_forced_choice"] in p["choices"]
        assert p["fc_correct"] == (p["forced_choice"] == p["answer"])
    per = metrics["per_attribute"]
    assert per["chance"]["Gender"] == 50.0 and per["chance"]["Pitch"] == 20.0
    assert set(per["forced_choice"]) == subs | {"overall"}
    for sub in subs:  # one fixed answer's score: its most common answer's share of the questions
        answers = Counter(p["answer"] for p in preds if p["sub-category"] == sub)
        assert per["majority"][sub] == round(100 * max(answers.values()) / sum(answers.values()), 2)
    tops = sum(max(Counter(p["answer"] for p in preds if p["sub-category"] == s).values()) for s in subs)
    assert per["majority"]["overall"] == round(100 * tops / len(preds), 2)
    assert metrics["mmau"]["total"]["n"] == len(preds)
    assert 0.0 <= metrics["transcript_wer"] < 0.5  # asterisk prompts through Whisper tiny
    assert metrics["if_rate_text"] >= 0 and "forgetting_rate" in metrics
    assert json.loads((out / METRICS).read_text()) == metrics
    bars = json.loads((out / PLOT_ACCURACY).read_text())
    assert {b["attribute"] for b in bars} == subs | {"overall"}
    for attribute, name in CONFUSIONS.items():  # one record a question, as DVC's confusion template counts
        records = json.loads((out / name).read_text())
        assert records == [{"actual": p["answer"], "predicted": p["forced_choice"]}
                           for p in preds if p["sub-category"] == attribute]
        assert bool(records) == (attribute != "Instrument")  # no music clips here: an empty list
    pngs = sorted(p.name for p in (out / FIGURES).glob("*.png"))
    assert pngs == ["attribute_accuracy.png", "gender_confusion.png", "instrument_confusion.png", "pitch_confusion.png"]
    assert all((out / FIGURES / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)
    assert not list(out.rglob("*.tmp*"))

    # The model hears Whisper's transcript, not the corpus's.
    speech = [s for s in seeds if s["kind"] == "speech"]
    from components.audio import read_audio_ref

    heard = model.transcribe([read_audio_ref(root, s["audio"])[0] for s in speech])
    by_audio = {p["audio"]: p["heard"] for p in preds}
    assert [by_audio[s["audio"]] for s in speech] == heard


def test_dvc_plots_render_offline(evaluated, tmp_path: Path) -> None:
    """The evaluation's plots through the product's dvc.yaml and the page built at set-up draw in Chromium
    with the network cut; DVC's own page (Vega from a CDN) draws nothing there (what a user saw)."""
    from tests.plots_page import drawn, plots_workspace, show

    out, _, _ = evaluated
    names = ("plots/attribute_accuracy.json", *CONFUSIONS.values())
    ws = plots_workspace(tmp_path / "ws", {f"data/evaluate/{n}": out / n for n in names})
    page = show(ws)
    assert "cdn.jsdelivr" not in page.read_text() and "<script src=" not in page.read_text()
    charts, ink = drawn(page)
    assert charts == len(names) - 1 and ink > 0.02  # the instrument confusion is empty here (no music): not drawn
    # DVC's own page: its `{scripts}` placeholder takes Vega from a CDN
    (tmp_path / "cdn.html").write_text("<html><head>{scripts}</head><body>{plot_divs}</body></html>")
    cdn = show(ws, "--html-template", str(tmp_path / "cdn.html"))
    assert "cdn.jsdelivr" in cdn.read_text() and drawn(cdn)[0] == 0


def test_progress_bar_reaches_every_row(evaluated, heldout) -> None:
    """The bar counts every row sent through a model (clips heard: encoded and transcribed in one pass,
    questions with and without audio, IF with audio and as text) and ends at its total: no phase runs unseen."""
    _, seeds = heldout
    questions, test = build_mcq(seeds), [s for s in seeds if s["split"] == "test"]
    total = len({s["audio"] for s in test}) + 2 * len(questions) + 2 * len(test)
    last = evaluated[2].strip().splitlines()[-1]
    assert last.startswith("evaluate") and f" {total}/{total} " in last and "phase=IF text" in last


@pytest.fixture(scope="module")
def fp32(repo: Path, embedded_models) -> DestaModel:
    torch.manual_seed(0)
    return DestaModel.from_backbones(DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"]),
                                     precision="fp32")


def test_batched_scoring_equals_one_row_at_a_time(heldout, evaluated, fp32: DestaModel) -> None:
    """Mixed batches (several clips, prompts and option lengths, padding) score every row as if it
    were alone: checked in fp32, where batching changes nothing but summation order. (In bf16,
    oneDNN's shape-dependent blocking moves option scores by up to ~0.5 nats.)"""
    root, _ = heldout
    preds = [json.loads(line) for line in (evaluated[0] / PREDICTIONS).read_text().splitlines()]
    picks = [next(p for p in preds if p["sub-category"] == sub) for sub in ("Pitch", "Sound category", "What was said")]
    rows = [(p, c) for p in picks for c in p["choices"]]
    msgs = [audio_messages(mcq_prompt(p), p["audio"], p["heard"]) for p, _ in rows]
    batched = fp32.response_logprobs(None, msgs, [c for _, c in rows], batch_size=32, data_root=root)
    alone = [fp32.response_logprobs(None, [m], [c], batch_size=1, data_root=root)[0] for m, (_, c) in zip(msgs, rows)]
    assert batched == pytest.approx(alone, abs=2e-3)
    prior = TextOnly(fp32.llm, fp32.tokenizer, bf16=False)
    prompts = [mcq_prompt(p) for p, _ in rows]
    batched = prior.logprobs(prompts, [c for _, c in rows], batch_size=32)
    alone = [prior.logprobs([q], [c], batch_size=1)[0] for q, (_, c) in zip(prompts, rows)]
    assert batched == pytest.approx(alone, abs=2e-3)


def test_max_questions_takes_whole_clips_in_hash_order(heldout) -> None:
    from components.evaluate.run import _sample

    _, seeds = heldout
    questions = build_mcq(seeds)
    picked = _sample(questions, 7)
    assert len(picked) == 7 and _sample(questions, None) == questions and _sample(questions, 999) == questions
    assert _sample(list(reversed(questions)), 7) == picked  # a fixed order, not the input order
    audios = [p["audio"] for p in picked]
    # a clip's questions are adjacent, and every clip but the last is whole
    runs = [a for i, a in enumerate(audios) if i == 0 or a != audios[i - 1]]
    assert len(set(audios)) == len(runs)
    for a in runs[:-1]:
        assert audios.count(a) == sum(q["audio"] == a for q in questions)


def test_evaluate_cli_writes_dvc_outputs_and_fails_clearly(tmp_path: Path, repo: Path, heldout,
                                                           model: DestaModel) -> None:
    root, seeds = heldout
    params = tmp_path / "params.yaml"
    params.write_text((repo / "params.yaml").read_text())
    apply_overrides(params, [f"tiny.data.root={root}", "tiny.evaluate.max_questions=6"])
    seeds_file = tmp_path / "seeds.jsonl"
    seeds_file.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    runner = CliRunner()

    missing = runner.invoke(app, ["evaluate", "--params", str(params), "--model", str(tmp_path / "nope"),
                                  "--seeds", str(seeds_file), "--no-track"])
    assert missing.exit_code == 1 and "no trained model" in missing.output

    model.save_pretrained(tmp_path / "model")
    res = runner.invoke(app, ["evaluate", "--params", str(params), "--model", str(tmp_path / "model"),
                              "--seeds", str(seeds_file), "--out", str(tmp_path / "eval"), "--no-track"])
    assert res.exit_code == 0, res.output
    assert "forced-choice" in res.output and "chance" in res.output
    metrics = json.loads((tmp_path / "eval" / METRICS).read_text())
    assert metrics["questions"] == 6
    assert len((tmp_path / "eval" / PREDICTIONS).read_text().splitlines()) == 6


def test_one_context_pass_gives_the_answers_and_scores_of_separate_passes(heldout, evaluated, fp32: DestaModel) -> None:
    """The evaluation runs each question's context once (components/model/decode.py), the part shared by a
    clip's questions once for all of them, identical contexts once, and the options packed after the
    context: its greedy answer is `generate`'s, token for token, and each option's score is the
    full-sequence score, with audio (DestaModel.generate / response_logprobs) and text only (TextOnly).
    Checked in fp32."""
    from components.evaluate.ask import Asker
    from components.vocab import SYSTEM

    root, _ = heldout
    preds = [json.loads(line) for line in (evaluated[0] / PREDICTIONS).read_text().splitlines()]
    picks = [next(p for p in preds if p["sub-category"] == sub) for sub in ("Pitch", "Sound category", "What was said")]
    picks += preds[:5]  # rows of several lengths (left padding in the shared batch), a clip asked several times
    picks += picks[:1]  # an identical context
    assert len({p["audio"] for p in preds[:5]}) < 5
    msgs = [audio_messages(mcq_prompt(p), p["audio"], p["heard"]) for p in picks]
    prompts = [mcq_prompt(p) for p in picks]
    asker = Asker(fp32, root, batch_size=8)
    asker.hear([p["audio"] for p in picks])
    answers, scores = asker.ask(asker.audio_rows(msgs), 16,
                                options=[asker.option_ids(p["choices"], eos=True) for p in picks])
    assert answers == fp32.generate(None, msgs, max_new_tokens=16, batch_size=8, data_root=root)
    for p, m, got in zip(picks, msgs, scores):
        alone = fp32.response_logprobs(None, [m] * len(p["choices"]), p["choices"], batch_size=1, data_root=root)
        assert got == pytest.approx(alone, abs=2e-3)
    prior = TextOnly(fp32.llm, fp32.tokenizer, bf16=False)
    answers, scores = asker.ask(asker.text_rows(SYSTEM, prompts), 32,
                                options=[asker.option_ids(p["choices"], eos=False) for p in picks])
    assert answers == prior.generate(prompts, batch_size=8)
    for p, q, got in zip(picks, prompts, scores):
        assert got == pytest.approx(prior.logprobs([q] * len(p["choices"]), p["choices"], batch_size=1), abs=2e-3)


def test_instruction_following_stops_once_settled_with_the_same_verdicts(heldout, fp32: DestaModel) -> None:
    """IF answers end as soon as their verdict cannot change: the verdicts are those of the full
    answers, and fewer tokens are generated."""
    from components.evaluate.ask import Asker
    from components.evaluate.ifeval import IF_PROMPTS, if_check, if_settled

    root, seeds = heldout
    items = [(s, IF_PROMPTS[i % len(IF_PROMPTS)]) for i, s in enumerate(seeds)]
    msgs = [audio_messages(p["prompt"], s["audio"], s.get("transcript") or "") for s, p in items]
    asker = Asker(fp32, root, batch_size=4)
    asker.hear([s["audio"] for s, _ in items])

    def run(settled):
        return asker.ask(asker.audio_rows(msgs), 64, settled=settled)[0]

    full, short = run(None), run(lambda r, text: if_settled(items[r][1], text))
    assert [if_check(p, t) for (_, p), t in zip(items, short)] == [if_check(p, t) for (_, p), t in zip(items, full)]
    assert all(f.startswith(s) for f, s in zip(full, short))
    assert sum(map(len, short)) < sum(map(len, full))
