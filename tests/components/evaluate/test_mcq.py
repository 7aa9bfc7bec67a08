"""Attribute MCQ rows: MMAU layout, only test-split clips, answers among choices, stable."""

from __future__ import annotations

from components.evaluate.mcq import build_mcq
from components.vocab import mcq_prompt
from components.evaluate.mmau import score_mmau


def _seed(i: int, split: str = "test", kind: str = "speech", **attrs: str) -> dict:
    a = {k.replace("_", " "): {"value": v, "source": "metadata"} for k, v in attrs.items()}
    return {"id": f"c{i}", "audio": f"ingest/shards/s.tar/c{i}.flac", "split": split, "kind": kind,
            "transcript": f"sentence number {i}" if kind == "speech" else None, "attributes": a}


def test_questions_from_test_split_only() -> None:
    seeds = [_seed(i, Gender="Male", Pitch="High", Speaking_speed="Fast", Volume="Low") for i in range(6)]
    seeds.append(_seed(99, split="train", Gender="Female"))
    rows = build_mcq(seeds)
    assert {r["id"].split("-")[0] for r in rows} == {f"c{i}" for i in range(6)}
    subs = {r["sub-category"] for r in rows}
    assert subs == {"Gender", "Pitch", "Speaking speed", "Volume", "What was said"}
    for r in rows:
        assert r["answer"] in r["choices"] and len(set(r["choices"])) == len(r["choices"])
        assert r["chance"] == round(100 / len(r["choices"]), 2)
        assert r["answer"] in mcq_prompt(r) and "without any explanation" in mcq_prompt(r)
    assert build_mcq(seeds) == rows  # deterministic


def test_sound_category_questions_and_scoring() -> None:
    cats = ["bell", "door_knock", "alarm", "camera_shutter", "message"]
    seeds = [_seed(i, kind="sound", Audio_category=c) for i, c in enumerate(cats)]
    rows = build_mcq(seeds)
    assert len(rows) == 5 and all(r["task"] == "sound" for r in rows)
    perfect = [{**r, "model_prediction": r["answer"]} for r in rows]
    assert score_mmau(perfect)["total"] == {"accuracy": 100.0, "n": 5}


def test_said_distractors_are_drawn_as_from_a_copied_list_without_the_answer() -> None:
    """The 'what was said' distractors come from a view of the held-out transcripts (a copy per question
    was quadratic: hours at 10^6 rows); random.sample must draw exactly what it drew from the copy, on
    both of its paths (a pool copy for short lists, index draws for long ones)."""
    import random

    from components.evaluate.mcq import _AllBut

    for n in (4, 5, 21, 22, 23, 40, 500):
        items = [f"t{i:04d}" for i in range(n)]
        for skip in (0, n // 2, n - 1, None):
            copied = [t for i, t in enumerate(items) if i != skip]
            view = _AllBut(items, skip)
            assert list(view) == copied and len(view) == len(copied)
            for seed in range(20):
                assert random.Random(seed).sample(view, 3) == random.Random(seed).sample(copied, 3)
    seeds = [_seed(i, Gender="Male") for i in range(60)]
    said = [r for r in build_mcq(seeds) if r["sub-category"] == "What was said"]
    assert len(said) == 60 and all(r["choices"].count(r["answer"]) == 1 for r in said)


def test_said_options_never_read_alike() -> None:
    """Two clips whose transcripts differ only in case or punctuation ("Rear Center." / "Rear center.",
    as the freedesktop and alsa sound themes spell one phrase) say the same words: neither may be a
    distractor of the other, and no question offers two options that read alike."""
    from components.text import normalize_transcript

    seeds = [_seed(i, Gender="Male") for i in range(8)]
    seeds[0]["transcript"], seeds[1]["transcript"] = "Rear Center.", "Rear center."
    seeds[2]["transcript"] = "rear, center"
    said = [r for r in build_mcq(seeds) if r["sub-category"] == "What was said"]
    assert len(said) == 8
    for r in said:
        read = [normalize_transcript(c) for c in r["choices"]]
        assert len(set(read)) == len(read) == 4, r["choices"]
        assert r["answer"] in r["choices"]
    assert {r["answer"] for r in said[:3]} == {"Rear Center.", "Rear center.", "rear, center"}
