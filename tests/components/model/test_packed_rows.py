"""train.pack_clip_rows on the real tiny model: rows about the same clip run their shared prefix (the
audio and its transcript) once, each row's own tokens packed after it (prompt.pack, DestaModel.forward)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.audio import read_audio_ref
from components.config import load_params
from components.model import DestaModel, DestaSpec
from components.model import prompt as P
from tests.components.model.realdata import build_corpus, loss_and_grads

QUESTIONS = [("Is the voice female or male?", "The voice is female."),
             ("What gender is the speaker? Choices: Male, Female.", "Female"),
             ("Describe the speaker's voice.", "A calm voice reads a short sentence at an even pace.")]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Three questions about each of three spoken clips, and one sound clip asked once (a row alone)."""
    root = tmp_path_factory.mktemp("packed-data")
    corpus = build_corpus(root, n_speech=3, sounds=("bell",))
    by_clip = {r["messages"][1]["audios"][0]["audio"]: r for r in corpus}
    speech = [r for r in by_clip.values() if r["messages"][1]["audios"][0]["text"]][:3]
    sound = next(r for r in by_clip.values() if not r["messages"][1]["audios"][0]["text"])
    out = []
    for r in speech:
        for q, a in QUESTIONS:
            out.append({"messages": [r["messages"][0], {**r["messages"][1], "content": f"<|AUDIO|>\n{q}"}],
                        "response": a})
    return root, out + [sound]


def test_packed_rows_give_each_row_its_unpacked_loss_and_gradients(repo: Path, embedded_models, rows) -> None:
    """fp32, no dropout: the packed batch's loss, scored tokens and connector gradients are the
    collated batch's (the same rows), with the frozen head reused or not, averaged over tokens or rows
    (train.loss_average); the packed batch has fewer tokens and one set of clips per sequence."""
    torch.manual_seed(0)
    spec = DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"])
    model = DestaModel.from_backbones(spec, "fp32")
    root, batch_rows = rows
    clips = [r["messages"][1]["audios"][0] for r in batch_rows]
    enc = [P.encode(model.tokenizer, r["messages"], [c["text"]], 16, response=r["response"])
           for r, c in zip(batch_rows, clips)]
    groups = P.group_rows(enc, [c["audio"] for c in clips])
    assert [len(g) for g, _ in groups] == [3, 3, 3, 1]
    assert groups[0][1] >= enc[0].audio_mask.index(True) + 16 and groups[3][1] == 0
    plain = P.collate(enc, model.tokenizer.pad_token_id)
    packed, order = P.pack(enc, [c["audio"] for c in clips], model.tokenizer.pad_token_id)
    assert int(packed["attention_mask"].sum()) < int(plain["attention_mask"].sum())
    assert len(packed["input_ids"]) <= len(groups) and sorted(order) == sorted(g for g, _ in groups)
    wavs = {c["audio"]: read_audio_ref(root, c["audio"])[0] for c in clips}
    states_plain = model.encode([wavs[c["audio"]] for c in clips])
    states_packed = model.encode([wavs[clips[g[0]]["audio"]] for g in order])

    counts = (plain["labels"][:, 1:] != P.IGNORE).sum(1)
    losses = {}
    for average, reuse in ((a, r) for a in ("token", "row") for r in (False, True)):
        model.loss_average = average
        a, ga = loss_and_grads(model, plain, states_plain, reuse)
        b, gb = loss_and_grads(model, packed, states_packed, reuse)
        assert a.tokens == b.tokens > 0
        assert abs(a.loss.item() - b.loss.item()) < 1e-4, (average, reuse, a.loss.item(), b.loss.item())
        assert torch.nn.functional.cosine_similarity(ga, gb, dim=0) > 0.9999
        assert (ga - gb).norm() < 1e-3 * ga.norm()
        assert abs(b.row_logprob.sum().item() - a.row_logprob.sum().item()) < 1e-3  # per sequence when packed
        per_row = -(a.row_logprob / counts).mean() if average == "row" else -a.row_logprob.sum() / counts.sum()
        assert abs(a.loss.item() - per_row.item()) < 1e-4, (average, a.loss.item(), per_row.item())
        losses[average] = a.loss.item()
    # the one-word choice row ("Female") and the long answers weigh differently: the two losses differ
    assert abs(losses["token"] - losses["row"]) > 1e-3


def test_rows_without_a_common_prefix_through_their_audio_stay_alone(monkeypatch) -> None:
    """Rows that part before their audio ends, or a row the prefix would leave empty, are not packed."""
    def ex(ids, audio, labelled):
        return P.Encoded(ids, [P.IGNORE] * (len(ids) - labelled) + ids[len(ids) - labelled:],
                         [i in audio for i in range(len(ids))], 1)

    a = ex([1, 2, 0, 0, 5, 6, 7, 8], {2, 3}, 2)
    b = ex([1, 2, 0, 0, 5, 9, 7, 8], {2, 3}, 2)
    assert P.shared_prefix([a, b]) == 5  # through the audio and the common text after it
    c = ex([1, 3, 0, 0, 5, 6, 7, 8], {2, 3}, 2)  # parts before the audio
    assert P.shared_prefix([a, c]) == 0 and P.group_rows([a, c], ["x", "x"]) == [([0], 0), ([1], 0)]
    same = ex([1, 2, 0, 0, 5, 6, 7, 8], {2, 3}, 2)  # the same row twice: the prefix stops before the scored tokens
    assert P.shared_prefix([a, same]) == 5
    assert P.group_rows([a, b, c], ["x", "x", "y"]) == [([0, 1], 5), ([2], 0)]
    packed, order = P.pack([a, c], ["x", "x"], 0)  # one clip, no shared prefix: each row runs whole
    assert order == [[0], [1]] and packed["input_ids"].tolist() == [[1, 2, 0, 0, 5, 6, 7, 8, 3, 0, 0, 5, 6, 7, 8]]
    packed, order = P.pack([a, b, c], ["x", "x", "y"], 0)
    assert order == [[0, 1], [2]]  # longest first, one sequence: the common opening (token 1), a+b's prefix, a's
    # and b's own tokens, then c's tokens after the opening
    assert packed["input_ids"].tolist() == [[1, 2, 0, 0, 5, 6, 7, 8, 9, 7, 8, 3, 0, 0, 5, 6, 7, 8]]
    assert packed["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7]
    vis = packed["visible"][0]
    assert vis[8, :5].all() and not vis[8, 5:8].any() and vis[8, 8]  # b's first token: the prefix and itself
    assert vis[11].tolist() == [True] + [False] * 10 + [True] + [False] * 6  # c's first: the opening, itself
    monkeypatch.setattr(P, "PACK_WIDTH", 8)
    packed, order = P.pack([c, a, b], ["y", "x", "x"], 0)
    assert order == [[1, 2], [0]] and packed["input_ids"].tolist() == [[1, 2, 0, 0, 5, 6, 7, 8, 9, 7, 8],
                                                                [1, 3, 0, 0, 5, 6, 7, 8, 0, 0, 0]]
    assert packed["visible"][1, 9].tolist() == [True] + [False] * 8 + [True, False]  # padding: the opening, itself
