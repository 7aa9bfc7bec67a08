"""train.reuse_frozen_head on the real tiny model: the rows' common text before the audio (the system
turn) runs once and its KV state is reused (DestaModel.forward)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.audio import read_audio_ref
from components.config import load_params
from components.model import DestaModel, DestaSpec
from components.model import prompt as P
from tests.components.model.realdata import build_corpus, loss_and_grads


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("head-data")
    return root, build_corpus(root, n_speech=4, sounds=("bell",))


def test_reused_frozen_head_gives_the_same_loss_and_gradients(repo: Path, embedded_models, corpus) -> None:
    """The rows' common text before the audio (the system turn) runs once and its
    KV state is reused; in fp32 the loss, per-row scores and connector gradients are the full forward's."""
    torch.manual_seed(0)
    spec = DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"])
    model = DestaModel.from_backbones(spec, "fp32")
    root, rows = corpus
    rows = [r for r in rows if r["messages"][1]["audios"][0]["text"]][:4]
    enc = [P.encode(model.tokenizer, r["messages"], [r["messages"][1]["audios"][0]["text"]], 16,
                    response=r["response"]) for r in rows]
    batch = P.collate(enc, model.tokenizer.pad_token_id)
    states = model.encode([read_audio_ref(root, r["messages"][1]["audios"][0]["audio"])[0] for r in rows])
    head = model._frozen_head(batch["input_ids"], batch["attention_mask"], batch["audio_mask"], batch["labels"])
    assert head == enc[0].audio_mask.index(True) > 10  # everything before the first audio position

    full, g_full = loss_and_grads(model, batch, states, False)
    reused, g_reused = loss_and_grads(model, batch, states, True)
    assert len(model._heads) == 1 and reused.tokens == full.tokens
    assert abs(reused.loss.item() - full.loss.item()) < 1e-4
    assert torch.allclose(reused.row_logprob, full.row_logprob, atol=1e-3)
    assert torch.nn.functional.cosine_similarity(g_full, g_reused, dim=0) > 0.9999
    # a trainable LLM (LoRA) changes its own head state: nothing is reused
    model.llm.get_input_embeddings().weight.requires_grad_(True)
    assert model._frozen_head(batch["input_ids"], batch["attention_mask"], batch["audio_mask"], batch["labels"]) == 0
