"""The held-out split: no speaker and no transcript on both sides."""

from __future__ import annotations

from components.seeds.split import TEST, TRAIN, _norm, assign_splits
from components.ingest.embedded import VOICES, EspeakSettings, _espeak_plan


def _rows() -> list[dict]:
    """Rows shaped like the embedded corpus: one big single-speaker set, espeak groups, sounds."""
    rows = [{"id": f"a{i:03d}", "speaker": "allison", "transcript": f"prompt number {i}"} for i in range(100)]
    for item in _espeak_plan(EspeakSettings(espeak_clips=300)):
        rows.append({"id": item["name"], "speaker": item["voice"], "transcript": item["text"]})
    rows += [{"id": f"s{i:02d}", "speaker": None, "transcript": None} for i in range(20)]
    return rows


def _sides(rows: list[dict], split: list[str], key) -> tuple[set, set]:
    train = {key(r) for r, s in zip(rows, split) if s == TRAIN and key(r)}
    test = {key(r) for r, s in zip(rows, split) if s == TEST and key(r)}
    return train, test


def test_no_speaker_or_text_on_both_sides() -> None:
    rows = _rows()
    split = assign_splits(rows, 0.2, seed=0)
    for key in (lambda r: r["speaker"], lambda r: r["transcript"] and _norm(r["transcript"]), lambda r: r["id"]):
        train, test = _sides(rows, split, key)
        assert not train & test
    n_test = split.count(TEST)
    assert 0.1 * len(rows) <= n_test <= 0.2 * len(rows)
    # the single-speaker set is too big to hold out, so it trains; espeak groups supply the test side
    assert {s for r, s in zip(rows, split) if r["speaker"] == "allison"} == {TRAIN}
    assert any(s == TEST for r, s in zip(rows, split) if r["id"].startswith("espeak"))


def test_split_is_deterministic_and_order_free() -> None:
    rows = _rows()
    a = dict(zip((r["id"] for r in rows), assign_splits(rows, 0.2, seed=0)))
    rev = rows[::-1]
    b = dict(zip((r["id"] for r in rev), assign_splits(rev, 0.2, seed=0)))
    assert a == b
    c = dict(zip((r["id"] for r in rows), assign_splits(rows, 0.2, seed=1)))
    assert c != a


def test_espeak_groups_hold_several_voices_per_gender() -> None:
    """Each held-out group brings 2+ unseen voices per gender, and no voice is in two groups (a model
    trained on one voice per gender learns those voices, not gender)."""
    plan = _espeak_plan(EspeakSettings(espeak_clips=300))
    groups: dict[int, dict[str, set[str]]] = {}
    for item in plan:
        groups.setdefault(item["group"], {}).setdefault(item["gender"], set()).add(item["voice"])
    assert len(groups) == 5
    assert all(len(g["Male"]) >= 2 and len(g["Female"]) >= 2 for g in groups.values())
    voices = [v for g in groups.values() for vs in g.values() for v in vs]
    assert len(voices) == len(set(voices)) == sum(len(vs) for by_group in VOICES.values() for vs in by_group)


def test_every_espeak_voice_speaks_with_its_gender() -> None:
    """Real espeak-ng: every variant exists, and at the same pitch setting each female voice is higher
    than each male voice (median F0)."""
    import subprocess
    import tempfile

    import soundfile as sf
    import torch
    import torchaudio

    def f0(voice: str) -> float:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-v", f"en-us+{voice}", "-p", "50", "-w", f.name,
                            "The library closes early today."], check=True, capture_output=True)
            wav, sr = sf.read(f.name, dtype="float32")
        return float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(wav), sr).median())

    male = [f0(v) for group in VOICES["Male"] for v in group]
    female = [f0(v) for group in VOICES["Female"] for v in group]
    assert max(male) < min(female), (male, female)
