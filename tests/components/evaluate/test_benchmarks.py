"""External benchmark runners (MMAU, Dynamic-SUPERB, Speech-IFEval) on small hand-made files in
each official layout, real clips (asterisk prompts, a freedesktop sound) and a real small DeSTA
model (untrained connector: the tests check the pipeline, not the answers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from components.evaluate.bench_cli import app as bench_app
from components.evaluate.benchmarks import (
    BenchmarkFormatError,
    load_dynamic_superb,
    load_mmau,
    load_speech_ifeval,
    run_benchmark,
    score_results,
)
from components.evaluate.mmau import load_results
from components.evaluate.scorers import check_instruction, normalize_label, string_match
from components.evaluate.score_cli import app as score_app

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
CLIPS = {"activated.wav": ASTERISK / "activated.wav", "minutes.wav": ASTERISK / "minutes.wav",
         "saved.wav": ASTERISK / "vm-savedto.wav", "bell.oga": FREEDESKTOP / "bell.oga"}
MAX_NEW = 8


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-data")
    for sub in ("clips", "EmotionRecognition_Tiny"):
        (root / sub).mkdir()
        for name, src in CLIPS.items():
            if not src.is_file():
                pytest.skip(f"{src} missing (Debian asterisk-core-sounds-en-wav / sound-theme-freedesktop)")
            shutil.copy(src, root / sub / name)
    (root / "clips" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root.parent / "outside.wav").write_bytes((root / "clips" / "minutes.wav").read_bytes())
    return root


@pytest.fixture(scope="module")
def tiny(repo: Path, embedded_models):
    from components.config import load_params
    from components.model import DestaModel, DestaSpec

    torch.manual_seed(0)
    return DestaModel.from_backbones(DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"]))


def _mmau_row(i: int, audio: str, task: str = "speech", **kw) -> dict:
    row = {"id": f"q{i}", "audio_id": audio, "question": "What does the speaker say?",
           "choices": ["Activated", "Minutes", "Saved to", "Goodbye"], "answer": "Activated", "dataset": "asterisk",
           "task": task, "split": "test-mini", "category": "Perception", "sub-category": "Speech content",
           "difficulty": "easy"}
    return row | kw


def _write(path: Path, data, jsonl: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data) if jsonl else json.dumps(data, indent=1))
    return path


def _asked(tiny, bench, n: int) -> list[str]:
    """The model's own answers to the first `n` items, asked here in one batch as the runner does: what the
    results file must hold, row for row."""
    from components.audio import load_audio
    from components.evaluate.run import audio_messages

    items = bench.items[:n]
    return tiny.generate([[load_audio(it.path).numpy()] for it in items],
                         [audio_messages(it.prompt, it.audio, None) for it in items], max_new_tokens=MAX_NEW,
                         batch_size=8, data_root=bench.data_root)


def _pct(hits: list[bool]) -> float:
    return float(f"{100 * sum(hits) / len(hits):.2f}")


def _score_cli(results: Path) -> dict:
    res = CliRunner().invoke(score_app, ["mmau", str(results)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------
# Runs through the real model
# --------------------------------------------------------------------------------------------


def test_mmau_run_writes_results_layout_and_scores(tiny, data_root: Path, tmp_path: Path) -> None:
    rows = [_mmau_row(0, "./clips/activated.wav"),
            _mmau_row(1, "./clips/minutes.wav", answer="Minutes", difficulty="medium"),
            _mmau_row(2, "./clips/bell.oga", task="sound", question="What sound is this?",
                      choices=["Bell", "Dog bark"], answer="Bell", **{"sub-category": "Sound event"}),
            _mmau_row(3, "./clips/corrupt.wav")]  # exists but cannot be decoded: skipped and listed
    src = _write(tmp_path / "mmau-test-mini.json", rows)
    bench = load_mmau(src, data_root)
    assert [it.prompt for it in bench.items][0] == (
        "What does the speaker say? Choices: Activated, Minutes, Saved to, Goodbye. "
        "Choose one of the options without any explanation.")
    with pytest.raises(BenchmarkFormatError, match=r"mmau-test-mini.json: row 3 \(id 'q3'\): cannot decode audio"):
        run_benchmark(tiny, bench, tmp_path / "never.json", max_new_tokens=MAX_NEW, show_progress=False)
    assert not (tmp_path / "never.json").exists()

    out = tmp_path / "results.json"
    report = run_benchmark(tiny, bench, out, max_new_tokens=MAX_NEW, on_bad="skip", show_progress=False)
    written = load_results(out)
    assert len(written) == 3 and report["skipped"] == 1 and report["skipped_rows"][0]["row"] == 3
    for given, got in zip(rows, written):
        assert {k: got[k] for k in given} == given  # the input row, unchanged
    assert [w["model_prediction"] for w in written] == _asked(tiny, bench, 3)  # each row holds its own answer
    # The figures, counted here from those answers with MMAU's string match (itself checked against the
    # official scorer's printout in test_mmau.py): speech rows 0-1, sound row 2, the corrupt row in no denominator.
    hit = [string_match(w["answer"], w["model_prediction"], w["choices"]) for w in written]
    assert report["mmau"]["task"] == {"sound": {"accuracy": _pct(hit[2:]), "n": 1}, "music": {"accuracy": 0.0, "n": 0},
                                      "speech": {"accuracy": _pct(hit[:2]), "n": 2}}
    assert report["mmau"]["difficulty"]["medium"] == {"accuracy": _pct(hit[1:2]), "n": 1}
    assert report["accuracy"] == report["mmau"]["total"]["accuracy"] == _pct(hit)
    assert report["mmau"] == _score_cli(out)  # the file on disk scores the same from the CLI
    assert report["total_rows"] == 4 and report["rows"] == 3


def test_dynamic_superb_metadata_json_fills_mmau_fields(tiny, data_root: Path, tmp_path: Path) -> None:
    task_dir = data_root / "EmotionRecognition_Tiny"
    meta = {  # Phase-2 local layout: keyed by audio file, relative to the task directory
        "activated.wav": {"file": "activated.wav", "instruction": "What emotion is expressed? Answer happy, sad or neutral.",
                          "label": "happy"},
        "minutes.wav": {"file": "minutes.wav", "instruction": "What emotion is expressed? Answer happy, sad or neutral.",
                        "label": "neutral"},
        "saved.wav": {"file": "saved.wav", "instruction": "What emotion is expressed? Answer happy, sad or neutral.",
                      "label": "sad"},
    }
    src = _write(task_dir / "metadata.json", meta)
    bench = load_dynamic_superb(src, task_dir)
    assert bench.items[0].prompt == meta["activated.wav"]["instruction"]
    out = tmp_path / "ds-results.json"
    report = run_benchmark(tiny, bench, out, max_new_tokens=MAX_NEW, show_progress=False)
    written = load_results(out)
    assert [r["file"] for r in written] == list(meta)
    for r in written:
        assert r["task"] == "speech" and r["sub-category"] == "EmotionRecognition_Tiny"
        assert r["choices"] == ["happy", "neutral", "sad"] and r["answer"] == r["label"]
        assert r["difficulty"] == "medium"
    preds = [r["model_prediction"] for r in written]
    assert preds == _asked(tiny, bench, 3)
    exact = [normalize_label(p) == normalize_label(r["label"]) for p, r in zip(preds, written)]  # counted here
    match = [string_match(r["label"], p, r["choices"]) for p, r in zip(preds, written)]
    assert report["accuracy"] == {"exact": _pct(exact), "string_match": _pct(match), "n": 3}
    assert report["mmau"]["total"] == {"accuracy": _pct(match), "n": 3} and report["mmau"] == _score_cli(out)
    assert set(report["per_task"]) == {"EmotionRecognition_Tiny"} and report["accuracy"]["n"] == 3


def test_speech_ifeval_run_with_text_reference(tiny, data_root: Path, tmp_path: Path) -> None:
    rows = [
        {"id": 0, "audio_filepath": "clips/activated.wav", "instruction": "Transcribe the audio.\nUse only lowercase letters.",
         "textual_audio": "[00:00:00 - 00:00:01] Activated.(Gender: Female, Emotion: neutral)", "dataset": "ASR",
         "metric": "wer", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}], "label": "activated"},
        {"id": 1, "audio_filepath": "clips/minutes.wav", "instruction": "Describe the audio in under 3 sentences, mentioning 'voice'.",
         "textual_audio": "[00:00:00 - 00:00:01] minutes(Gender: Female, Emotion: neutral)", "dataset": "Gender_recognition",
         "metric": "open", "instruction_id_list": ["length_constraints:number_sentences", "keywords:existence"],
         "kwargs": [{"num_sentences": 3, "relation": "less than"}, {"keywords": ["voice"]}]},
        {"id": 2, "audio_filepath": "clips/saved.wav", "instruction": "What is said? Think step by step.",
         "textual_audio": "[00:00:00 - 00:00:01] saved to(Gender: Female, Emotion: neutral)", "dataset": "MMAU",
         "metric": "cot"},  # chain-of-thought row: answered, judged by an LLM upstream, not rule-scored here
    ]
    src = _write(tmp_path / "closed_ended_questions.jsonl", rows, jsonl=True)
    out = tmp_path / "ifeval-results.json"
    bench = load_speech_ifeval(src, data_root)
    report = run_benchmark(tiny, bench, out, max_new_tokens=MAX_NEW, show_progress=False)
    written = load_results(out)
    assert len(written) == 3
    for r in written:
        assert isinstance(r["model_prediction"], str) and isinstance(r["reference_response"], str)
        assert r["task"] == "speech" and r["choices"] == [] and r["difficulty"] == "medium"
    assert written[0]["answer"] == "activated" and written[1]["answer"] == ""
    assert len(written[0]["follow_instruction_list"]) == 1 and written[1]["follow_instruction_list"][0] is None
    assert "follow_instruction_list" not in written[2]
    assert report["unscored_rows"] == 1 and report["prompts"] == 2 and report["instructions"] == 2
    assert report["unchecked_instructions"] == {"length_constraints:number_sentences": 1}
    assert report["if_rate_text"] is not None
    assert [r["model_prediction"] for r in written] == _asked(tiny, bench, 3)
    # Counted here: rows 0 and 1 have one checked instruction each (number_sentences is unchecked).
    said = [check_instruction("change_case:english_lowercase", {}, written[0]["model_prediction"]),
            check_instruction("keywords:existence", {"keywords": ["voice"]}, written[1]["model_prediction"])]
    assert written[0]["follow_instruction_list"] == said[:1] and written[1]["follow_instruction_list"][1] == said[1]
    assert report["if_rate"] == _pct(said) and report["prompt_level"] == _pct(said)
    text = [check_instruction("change_case:english_lowercase", {}, written[0]["reference_response"]),
            check_instruction("keywords:existence", {"keywords": ["voice"]}, written[1]["reference_response"])]
    assert report["if_rate_text"] == _pct(text)


def test_cli_runs_benchmark_and_reports_bad_rows(tiny, data_root: Path, tmp_path: Path) -> None:
    from components.cli import app
    from components.audio import load_audio
    from components.vocab import mcq_prompt
    from components.evaluate.run import audio_messages

    model_dir = tiny.save_pretrained(tmp_path / "model")  # the CLI loads it for real (from_pretrained)
    src = _write(tmp_path / "mmau.json", [_mmau_row(0, "./clips/activated.wav"), _mmau_row(1, "./clips/nope.wav")])
    out = tmp_path / "cli-results.json"
    base = ["benchmark", "mmau", str(src), "--data-root", str(data_root), "--model", str(model_dir), "--out", str(out),
            "--max-new-tokens", str(MAX_NEW), "--no-progress"]
    bad = CliRunner().invoke(app, base)
    assert bad.exit_code == 1
    assert "mmau.json: row 1 (id 'q1'): audio file './clips/nope.wav' not found" in bad.stderr
    res = CliRunner().invoke(app, [*base, "--limit", "1"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["rows"] == 1 and report["results"] == str(out)
    # The answer is the saved model's: the same as the in-memory model on the same row.
    row = json.loads(out.read_text())[0]
    wav = load_audio(data_root / row["audio_id"]).numpy()
    expected = tiny.generate([[wav]], [audio_messages(mcq_prompt(row), row["audio_id"], None)], max_new_tokens=MAX_NEW)
    assert row["model_prediction"] == expected[0]
    assert report["mmau"] == _score_cli(out)


# --------------------------------------------------------------------------------------------
# Bad rows (no model needed: caught when the file is loaded)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "message"), [
    ({"audio_id": "./clips/missing.wav"}, r"row 0 \(id 'q0'\): audio file './clips/missing.wav' not found"),
    ({"audio_id": "../outside.wav"}, r"row 0 \(id 'q0'\): audio path '../outside.wav' escapes the data root"),
    ({"audio_id": "/etc/passwd"}, r"row 0 \(id 'q0'\): audio path '/etc/passwd' escapes the data root"),
    ({"question": None}, r"row 0 \(id 'q0'\): missing 'question'"),
    ({"answer": "Nobody"}, r"row 0 \(id 'q0'\): answer 'Nobody' is not one of the choices"),
    ({"task": "speech-emotion"}, r"row 0 \(id 'q0'\): task 'speech-emotion' is not one of"),
])
def test_mmau_bad_rows_name_file_and_row(data_root: Path, tmp_path: Path, row: dict, message: str) -> None:
    src = _write(tmp_path / "bad.json", [_mmau_row(0, "./clips/activated.wav") | row])
    with pytest.raises(BenchmarkFormatError, match=rf"bad.json: {message}"):
        load_mmau(src, data_root)


def test_bad_rows_can_be_skipped_and_are_counted(data_root: Path, tmp_path: Path) -> None:
    ds = _write(tmp_path / "ds.jsonl", [
        {"file": "clips/activated.wav", "instruction": "Emotion?", "label": "happy", "task_name": "Emo"},
        {"audio": "clips/minutes.wav", "instruction": "Emotion?", "label": "sad", "task": "Emo"},
        {"file": "clips/ghost.wav", "instruction": "Emotion?", "label": "sad"},
        {"file": "clips/saved.wav", "label": "sad"},
        "not an object",
    ], jsonl=True)
    with pytest.raises(BenchmarkFormatError, match=r"ds.jsonl: row 2: audio file 'clips/ghost.wav' not found"):
        load_dynamic_superb(ds, data_root)
    bench = load_dynamic_superb(ds, data_root, on_bad="skip")
    assert [it.index for it in bench.items] == [0, 1]
    assert [(s["row"], s["reason"]) for s in bench.skipped] == [
        (2, f"audio file 'clips/ghost.wav' not found under the data root {data_root}"),
        (3, "missing 'instruction'"), (4, "expected a JSON object, got str")]
    assert [it.row["sub-category"] for it in bench.items] == ["Emo", "Emo"]
    assert bench.items[1].row["task"] == "speech" and bench.items[1].row["task_name"] == "Emo"
    assert bench.items[0].row["choices"] == ["happy", "sad"]

    ife = _write(tmp_path / "ife.jsonl", [{"audio_filepath": "clips/activated.wav", "instruction": "Say it.",
                                           "instruction_id_list": ["keywords:existence"], "kwargs": []}], jsonl=True)
    with pytest.raises(BenchmarkFormatError, match=r"ife.jsonl: row 0: 'kwargs' must be a list with one entry"):
        load_speech_ifeval(ife, data_root)
    ife = _write(tmp_path / "ife2.jsonl", [{"audio_filepath": "clips/activated.wav", "instruction": "Say it.",
                                            "instruction_id_list": ["keywords:existence"], "kwargs": [{}]}], jsonl=True)
    with pytest.raises(BenchmarkFormatError, match=r"instruction 'keywords:existence' needs kwargs \['keywords'\]"):
        load_speech_ifeval(ife, data_root)
    with pytest.raises(BenchmarkFormatError, match="no usable rows"):
        load_speech_ifeval(ife, data_root, on_bad="skip")


# --------------------------------------------------------------------------------------------
# Worked examples: hand-written results files with known predictions
# --------------------------------------------------------------------------------------------


def test_worked_example_mmau(tmp_path: Path) -> None:
    def row(task, diff, sub, choices, answer, pred=None):
        r = {"question": "q", "audio_id": "./a.wav", "task": task, "difficulty": diff, "sub-category": sub,
             "choices": choices, "answer": answer}
        return r if pred is None else r | {"model_prediction": pred}

    rows = [row("sound", "easy", "A", ["Man", "Woman", "Child"], "Man", "Man."),          # hit
            row("sound", "medium", "A", ["Man", "Woman", "Child"], "Woman", "A man"),      # miss
            row("music", "hard", "B", ["Piano", "Guitar"], "Guitar", "The answer is guitar"),  # hit
            row("speech", "easy", "C", ["Yes", "No"], "No", ""),                           # empty: miss
            row("speech", "easy", "C", ["Yes", "No"], "No")]                               # no prediction: skipped
    report = score_results("mmau", rows)
    m = report["mmau"]
    assert report["accuracy"] == 50.0 and report["rows"] == 4 and report["no_prediction"] == 1
    assert m["task"] == {"sound": {"accuracy": 50.0, "n": 2}, "music": {"accuracy": 100.0, "n": 1},
                         "speech": {"accuracy": 0.0, "n": 1}}
    assert m["difficulty"] == {"easy": {"accuracy": 50.0, "n": 2}, "hard": {"accuracy": 100.0, "n": 1},
                               "medium": {"accuracy": 0.0, "n": 1}}
    assert m["sub-category"] == {"A": {"accuracy": 50.0, "n": 2}, "B": {"accuracy": 100.0, "n": 1},
                                 "C": {"accuracy": 0.0, "n": 1}}
    assert m == _score_cli(_write(tmp_path / "r.json", rows))


def test_worked_example_dynamic_superb(tmp_path: Path) -> None:
    emo = ["happy", "sad", "angry"]

    def row(task, label, choices, pred):
        return {"file": "x.wav", "instruction": "i", "label": label, "task": "speech", "sub-category": task,
                "difficulty": "medium", "choices": choices, "answer": label, "model_prediction": pred}

    rows = [row("Emotion", "happy", emo, "Happy."),               # exact + string match
            row("Emotion", "sad", emo, "I think it is sad"),      # string match only
            row("Emotion", "sad", emo, "happy or sad"),           # neither (names a wrong choice)
            row("Yes/No", "no", ["yes", "no"], "No")]             # exact + string match
    report = score_results("dynamic-superb", rows)
    assert report["accuracy"] == {"exact": 50.0, "string_match": 75.0, "n": 4}
    assert report["per_task"] == {"Emotion": {"exact": 33.33, "string_match": 66.67, "n": 3},
                                  "Yes/No": {"exact": 100.0, "string_match": 100.0, "n": 1}}
    assert report["mmau"]["total"] == {"accuracy": 75.0, "n": 4}
    results = _write(tmp_path / "r.json", rows)
    assert report["mmau"] == _score_cli(results)
    res = CliRunner().invoke(bench_app, ["score", "dynamic-superb", str(results)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == report
    del rows[0]["sub-category"]
    res = CliRunner().invoke(bench_app, ["score", "dynamic-superb", str(_write(results, rows))])
    assert res.exit_code == 1 and "row 0: 'sub-category' (the task name) must be a string" in res.stderr


def test_worked_example_speech_ifeval() -> None:
    def row(ids, kwargs, pred, ref):
        r = {"audio_filepath": "a.wav", "instruction": "i", "task": "speech", "sub-category": "d", "choices": [],
             "answer": "", "difficulty": "medium", "model_prediction": pred, "reference_response": ref}
        return r | ({"instruction_id_list": ids, "kwargs": kwargs} if ids else {})

    rows = [
        row(["change_case:english_lowercase"], [{}], "Hello there", "hello there"),            # speech F, text T
        row(["keywords:existence", "length_constraints:number_words"],
            [{"keywords": ["dog"]}, {"num_words": 5, "relation": "less than"}],
            "a dog barks at the big red cat", "the dog barks"),                                 # [T, F] / [T, T]
        row(["length_constraints:number_sentences", "startend:quotation"],
            [{"num_sentences": 2, "relation": "less than"}, {}], '"quoted"', "not quoted"),   # [-, T] / [-, F]
        row(None, None, "Let me think step by step.", "Step by step."),                        # CoT: not scored
    ]
    report = score_results("speech-ifeval", rows)
    assert report["if_rate"] == 50.0  # 2 of 4 checked instructions
    assert report["prompt_level"] == 33.33  # 1 of 3 prompts follows all its checked instructions
    assert report["instructions"] == 4 and report["prompts"] == 3 and report["unscored_rows"] == 1
    assert report["unchecked_instructions"] == {"length_constraints:number_sentences": 1}
    assert report["per_instruction"] == {
        "change_case:english_lowercase": {"rate": 0.0, "n": 1}, "keywords:existence": {"rate": 100.0, "n": 1},
        "length_constraints:number_words": {"rate": 0.0, "n": 1}, "startend:quotation": {"rate": 100.0, "n": 1}}
    assert report["if_rate_text"] == 75.0  # 3 of 4
    assert report["forgetting_rate"] == round((50.0 - 75.0) / 75.0, 4) == -0.3333
    # without a reference on every row there is no forgetting rate, and it says why
    partial = score_results("speech-ifeval", [rows[0], {k: v for k, v in rows[1].items() if k != "reference_response"}])
    assert partial["forgetting_rate"] is None and "only 1 of 2 rows" in partial["reference_note"]


def test_cli_benchmark_names_match_the_runners() -> None:
    from components.evaluate import bench_cli, benchmarks

    assert bench_cli.BENCHMARKS == benchmarks.BENCHMARKS
