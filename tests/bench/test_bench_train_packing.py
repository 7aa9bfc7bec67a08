"""Training s/step with train.pack_clip_rows against the per-row batches, 2 CPU ranks under ZeRO-2, the
same rows, seed and warm encoder cache: three questions per clip (as labelling asks several), with
the tokens each run's LLM ran an epoch and both loss curves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import cpu, train_history
from tests.bench.test_bench_label import HostLoad
from tests.components.model.realdata import build_corpus, write_rows

pytestmark = pytest.mark.bench
STEPS = 30
EXTRA = ("Is the voice female or male?", "The voice is female.")


def _rows(root: Path) -> Path:
    rows = build_corpus(root, n_speech=40)
    by_clip = {r["messages"][1]["audios"][0]["audio"]: r for r in rows}
    extra = [{**r, "id": r["id"] + "-g", "prompt": EXTRA[0], "response": EXTRA[1],
              "messages": [r["messages"][0], {**r["messages"][1], "content": f"<|AUDIO|>\n{EXTRA[0]}"}]}
             for r in by_clip.values() if r["messages"][1]["audios"][0]["text"]]
    return write_rows(root / "label" / "rows.jsonl", rows + extra)


@pytest.mark.timeout(3600)
def test_packed_clip_rows_step_time(tmp_path: Path, repo: Path, embedded_models, record) -> None:
    root = tmp_path / "data"
    rows, cache = _rows(root), tmp_path / "cache"
    train_history(repo, tmp_path / "warm", root, rows, cache, STEPS)  # fills the encoder cache for both
    load = HostLoad()
    runs = {"per_row": train_history(repo, tmp_path / "per-row", root, rows, cache, STEPS),
            "packed": train_history(repo, tmp_path / "packed", root, rows, cache, STEPS,
                                    pack_clip_rows=True)}
    per_step = {k: sum(h["step_seconds"] for h in hist[1:]) / (len(hist) - 1) for k, hist in runs.items()}
    n_rows = len(rows.read_text().splitlines())
    epoch = n_rows // 16  # steps an epoch: every row once
    tokens = {k: sum(h["tokens"] for h in hist[:epoch]) for k, hist in runs.items()}
    last = {k: sum(h["loss"] for h in hist[-10:]) / 10 for k, hist in runs.items()}
    figures = {
        "cpu": cpu(), "others_load": load.others(), "steps": STEPS, "ranks": 2, "batch_per_rank": 8, "rows": n_rows,
        "s_per_step": {k: round(v, 3) for k, v in per_step.items()},
        "speedup": round(per_step["per_row"] / per_step["packed"], 2),
        "tokens_first_epoch": tokens, "tokens_ratio": round(tokens["per_row"] / tokens["packed"], 2),
        "loss": {k: [round(h["loss"], 4) for h in hist] for k, hist in runs.items()},
        "loss_last10_mean": {k: round(v, 4) for k, v in last.items()},
        "note": "steady-state mean (step 1 excluded); same rows, seed and cached encoder states; the packed "
                "run's batches keep a clip's rows together, so its curve is another draw, not the same numbers",
    }
    record("train_packing", figures)
    assert tokens["packed"] < tokens["per_row"] and per_step["packed"] < per_step["per_row"], figures
    assert last["packed"] < 1.15 * last["per_row"], last  # learns as well, within the curves' noise
