"""score_mmau and `score mmau`: worked examples, format errors, and the official scorer's figures."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from components.evaluate.mmau import MMAUFormatError, load_results, score_mmau
from components.evaluate.scorers import string_match
from tests.components.evaluate import official_mmau_figures as official
from tests.conftest import REPO, VENV_BIN

DATA = Path(__file__).parent / "data"
DESTA25 = DATA / "desta25_mmau-test-mini_results.json.gz"
SYNTHETIC = DATA / "mmau-test-mini_synthetic.json.gz"


def row(task: str, difficulty: str, answer: str, prediction: str | None = None, sub: str | None = "A", **extra) -> dict:
    r = {"task": task, "difficulty": difficulty, "choices": ["Man", "Woman", "Dog"], "answer": answer, **extra}
    if sub is not None:
        r["sub-category"] = sub
    if prediction is not None:
        r["model_prediction"] = prediction
    return r


def unpack(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


# ------------------------------------------------------------------ worked example


def test_worked_example() -> None:
    rows = [
        row("sound", "easy", "Man", "Man.", sub="A"),  # hit
        row("sound", "hard", "Man", "Woman", sub="A"),  # miss
        row("music", "medium", "Dog", "", sub="B"),  # empty string: scored, wrong
        row("speech", "easy", "Dog", "dog", sub=None),  # hit, no sub-category key
        {**row("speech", "medium", "Woman", "woman"), "sub-category": None},  # hit, null sub-category
        row("music", "easy", "Man", None, sub="B"),  # no prediction key: skipped
        row("music", "easy", "Woman", "WOMAN!", sub="B"),  # hit
    ]
    assert score_mmau(rows) == {
        "task": {
            "sound": {"accuracy": 50.0, "n": 2},
            "music": {"accuracy": 50.0, "n": 2},
            "speech": {"accuracy": 100.0, "n": 2},
        },
        "difficulty": {
            "easy": {"accuracy": 100.0, "n": 3},
            "hard": {"accuracy": 0.0, "n": 1},
            "medium": {"accuracy": 50.0, "n": 2},
        },
        "sub-category": {"A": {"accuracy": 50.0, "n": 2}, "B": {"accuracy": 50.0, "n": 2}},
        "total": {"accuracy": 66.67, "n": 6},
        "skipped": 1,
    }


def test_empty_categories_are_listed_with_zero_like_upstream() -> None:
    report = score_mmau([row("sound", "easy", "Man", "man")])
    assert report["task"]["music"] == {"accuracy": 0.0, "n": 0}
    assert list(report["task"]) == ["sound", "music", "speech"]
    assert list(report["difficulty"]) == ["easy", "hard", "medium"]


@pytest.mark.parametrize(("hits", "n", "expected"), [(1, 32, 3.12), (3, 32, 9.38), (2, 3, 66.67), (1, 3, 33.33)])
def test_rounding_is_the_official_two_decimal_format(hits: int, n: int, expected: float) -> None:
    # 3.125 and 9.375 are exact binary ties: "%.2f" rounds them half-to-even.
    rows = [row("sound", "easy", "Man", "man" if i < hits else "woman") for i in range(n)]
    assert score_mmau(rows)["total"]["accuracy"] == expected


def test_prediction_key_option() -> None:
    rows = [row("sound", "easy", "Man", "woman", model_output="The answer is man.")]
    assert score_mmau(rows)["total"]["accuracy"] == 0.0
    assert score_mmau(rows, prediction_key="model_output")["total"]["accuracy"] == 100.0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({**row("sound", "easy", "Man"), "model_prediction": None}, "row 0: 'model_prediction' is NoneType"),
        (row("ambient", "easy", "Man", "man"), "task 'ambient'"),
        (row("sound", "trivial", "Man", "man"), "difficulty 'trivial'"),
        ({**row("sound", "easy", "Man", "man"), "choices": "Man, Woman"}, "'choices' must be a list"),
        ({k: v for k, v in row("sound", "easy", "Man", "man").items() if k != "answer"}, "missing 'answer'"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_rows_the_official_scorer_would_crash_on_are_rejected(bad: object, message: str) -> None:
    with pytest.raises(MMAUFormatError, match=message):
        score_mmau([bad])


def test_nothing_to_score_is_an_error() -> None:
    with pytest.raises(MMAUFormatError, match="nothing to score"):
        score_mmau([row("sound", "easy", "Man")])


def test_load_results_rejects_non_arrays(tmp_path: Path) -> None:
    (tmp_path / "obj.json").write_text('{"rows": []}')
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(MMAUFormatError, match="JSON array"):
        load_results(tmp_path / "obj.json")
    with pytest.raises(MMAUFormatError, match="not valid JSON"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(MMAUFormatError, match="no such file"):
        load_results(tmp_path / "missing.json")


# ------------------------------------------------------------------ official figures


def test_test_data_is_the_published_bytes() -> None:
    assert hashlib.sha256(unpack(DESTA25)).hexdigest() == official.DESTA25_SHA256
    assert hashlib.sha256(unpack(SYNTHETIC)).hexdigest() == official.SYNTHETIC_SHA256


@pytest.mark.parametrize(
    ("path", "key", "printed"),
    [
        (DESTA25, "model_prediction", official.DESTA25_MODEL_PREDICTION),
        (DESTA25, "model_output", official.DESTA25_MODEL_OUTPUT),
        (SYNTHETIC, "model_prediction", official.SYNTHETIC_MODEL_PREDICTION),
        (SYNTHETIC, "model_output", official.SYNTHETIC_MODEL_OUTPUT),
    ],
    ids=["desta25-prediction", "desta25-output", "synthetic-prediction", "synthetic-output"],
)
def test_matches_official_scorer(path: Path, key: str, printed: str) -> None:
    rows = json.loads(unpack(path))
    report = score_mmau(rows, prediction_key=key)
    expected = official.parse_official(printed)
    assert report["skipped"] == sum(key not in r for r in rows)
    del report["skipped"]
    assert report == expected
    assert list(report["sub-category"]) == list(expected["sub-category"])  # first-seen order too


def test_desta25_published_task_figures() -> None:
    report = score_mmau(json.loads(unpack(DESTA25)))
    # kehanlu/DeSTA2.5-Audio README, MMAU-v05.15.25 test-mini.
    assert {t: v["accuracy"] for t, v in report["task"].items()} == {"sound": 70.57, "music": 56.29, "speech": 71.17}
    assert report["total"] == {"accuracy": 66.0, "n": 1000}


def test_unrounded_total_equals_older_official_version() -> None:
    rows = [r for r in json.loads(unpack(SYNTHETIC)) if "model_prediction" in r]
    hits = sum(string_match(r["answer"], r["model_prediction"], r["choices"]) for r in rows)
    assert official.SYNTHETIC_6097B91_TOTAL == f"Total acc: {(hits / len(rows)) * 100} over {len(rows)} samples"


# ------------------------------------------------------------------ CLI


def score_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(VENV_BIN / "python"), "-m", "components.evaluate.score_cli", "mmau", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("key", ["model_prediction", "model_output"])
def test_cli_prints_one_json_object(tmp_path: Path, key: str) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(unpack(DESTA25))
    res = score_cli(str(results), "--key", key)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # the whole of stdout is the object
    printed = official.DESTA25_MODEL_PREDICTION if key == "model_prediction" else official.DESTA25_MODEL_OUTPUT
    assert report == {**official.parse_official(printed), "skipped": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"a": 1}', "JSON array"), ('[{"task": "sound"}]', "nothing to score")],
)
def test_cli_fails_clearly_on_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = score_cli(str(bad))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "error:" in res.stderr and message in res.stderr
