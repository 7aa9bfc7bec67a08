"""Training s/step: the previous settings (attention kernel `auto`: torch picks flash; every row's
system turn run every step) against SDPA's `math` kernel, and `math` with the frozen head's KV state
reused (train.reuse_frozen_head), 2 CPU ranks under ZeRO-2, the same rows, seed and warm encoder cache,
with every loss curve; and how close each kernel's bf16 gradients are to an fp32 model's on the same
batch and dropout masks."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.bench.conftest import cpu, train_history
from tests.bench.test_bench_label import HostLoad
from tests.components.model.realdata import build_corpus, write_rows

pytestmark = pytest.mark.bench
STEPS = 30


SETTINGS = {"auto": {"attention_kernel": "auto", "reuse_frozen_head": False},
            "math": {"attention_kernel": "math", "reuse_frozen_head": False},
            "math+head": {"attention_kernel": "math", "reuse_frozen_head": True}}


@pytest.mark.timeout(3600)
def test_train_step_attention(tmp_path: Path, repo: Path, embedded_models, record) -> None:
    root = tmp_path / "data"
    rows = write_rows(root / "label" / "rows.jsonl", build_corpus(root, n_speech=40))
    cache = tmp_path / "cache"
    train_history(repo, tmp_path / "warm", root, rows, cache, STEPS, **SETTINGS["math"])  # fills the encoder cache
    load = HostLoad()
    runs = {a: train_history(repo, tmp_path / a.replace("+", "-"), root, rows, cache, STEPS, **SETTINGS[a])
            for a in SETTINGS}
    per_step = {a: sum(h["step_seconds"] for h in hist[1:]) / (len(hist) - 1) for a, hist in runs.items()}

    def diffs(a: str, b: str) -> dict[str, float]:
        d = [abs(x["loss"] - y["loss"]) for x, y in zip(runs[a], runs[b])]
        return {"max": round(max(d), 4), "mean": round(sum(d) / len(d), 4)}

    last = {a: sum(h["loss"] for h in hist[-5:]) / 5 for a, hist in runs.items()}
    figures = {
        "cpu": cpu(), "others_load": load.others(), "steps": STEPS, "ranks": 2, "batch_per_rank": 8,
        "settings": SETTINGS, "s_per_step": {a: round(s, 3) for a, s in per_step.items()},
        "speedup_vs_auto": {a: round(per_step["auto"] / s, 2) for a, s in per_step.items()},
        "loss": {a: [round(h["loss"], 4) for h in hist] for a, hist in runs.items()},
        "loss_last5_mean": {a: round(v, 4) for a, v in last.items()},
        "loss_abs_diff_vs_auto": {a: diffs("auto", a) for a in ("math", "math+head")},
        "loss_abs_diff_head_vs_no_head": diffs("math", "math+head"),
        "note": "steady-state mean (step 1 excluded); same rows, seed, batch plan and cached encoder states",
    }
    record("train_attention", figures)
    assert per_step["math"] < per_step["auto"] and per_step["math+head"] < per_step["math"], figures["s_per_step"]
    assert max(last["math"], last["math+head"]) < 1.1 * last["auto"], last  # learns at least as well


def test_attention_kernel_gradients_against_fp32(tmp_path: Path, repo: Path, embedded_models, record) -> None:
    """One batch of 8 real rows, one rank: the connector's gradient under each bf16 kernel against the
    fp32 model's (cosine similarity and norm ratio), the dropout masks seeded alike."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from components.audio import read_audio_ref
    from components.config import load_params
    from components.model import DestaModel, DestaSpec
    from components.model import prompt as P
    from components.model.encoder import valid_frames
    from components.train import data as D

    root = tmp_path / "data"
    rows = D.read_rows([write_rows(root / "label" / "rows.jsonl", build_corpus(root, n_speech=8))])
    torch.manual_seed(0)
    spec = DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"])
    model = DestaModel.from_backbones(spec, "bf16", with_decoder=False)
    enc = D.encode_rows(rows[:8], model.tokenizer, spec.model.prompt_size, 160, spec.model.max_transcript_tokens)
    batch = P.collate([e for e in enc.examples if e], model.tokenizer.pad_token_id)
    wavs = [read_audio_ref(root, r[0])[0] for e, r in zip(enc.examples, enc.refs) if e]
    states, frames = model.encode(wavs), valid_frames(wavs)
    model.train()

    def grad(kernel):
        torch.manual_seed(7)
        with sdpa_kernel(kernel) if kernel else contextlib.nullcontext():
            model(audio_states=states, audio_frames=frames, **batch).loss.backward()
        g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
        model.zero_grad()
        return g

    bf16 = {"auto": grad(None), "math": grad(SDPBackend.MATH)}
    model.llm.float()
    model.precision = "fp32"
    ref = grad(None)
    figures = {"cpu": cpu(), "rows": len(wavs), **{k: {
        "cosine_to_fp32": round(float(torch.nn.functional.cosine_similarity(g, ref, dim=0)), 4),
        "norm_ratio_to_fp32": round(float(g.norm() / ref.norm()), 3)} for k, g in bf16.items()}}
    record("train_attention_gradients", figures)
    assert figures["math"]["cosine_to_fp32"] > figures["auto"]["cosine_to_fp32"] + 0.1, figures
