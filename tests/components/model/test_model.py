"""The DeSTA model on the embedded backbones and real audio: sequences, masking, loss, encoder taps,
official layout, paper wiring (random tiny configs), save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import LoraConfig, load_params
from components.audio import read_audio_ref
from components.model import DestaModel, DestaSpec
from components.model import prompt as P
from components.model.encoder import EncoderCache, audio_key, tapped_states
from tests.components.model.realdata import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("model-data")
    return root, build_corpus(root, n_speech=4, sounds=("bell",))


@pytest.fixture(scope="session")
def tiny(repo: Path, embedded_models) -> DestaModel:
    torch.manual_seed(0)
    return DestaModel.from_backbones(DestaSpec.from_profile(load_params(repo / "params.yaml").profiles["tiny"]))


def _clip(corpus, row) -> np.ndarray:
    root, _ = corpus
    return read_audio_ref(root, row["messages"][1]["audios"][0]["audio"])[0]


def _speech_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["messages"][1]["audios"][0]["text"]]


def test_sequence_layout_and_labels_only_on_response(tiny: DestaModel, corpus) -> None:
    row = _speech_rows(corpus[1])[0]
    text = row["messages"][1]["audios"][0]["text"]
    e = P.encode(tiny.tokenizer, row["messages"], [text], 16, response=row["response"], max_length=300)
    tok = tiny.tokenizer
    ids, labels, mask = np.array(e.input_ids), np.array(e.labels), np.array(e.audio_mask)
    # 16 contiguous audio positions, right after "<start_audio>", then the transcript, then "<end_audio>"
    where = np.flatnonzero(mask)
    assert len(where) == 16 and (np.diff(where) == 1).all()
    assert tok.decode(ids[: where[0]]).endswith("<|im_start|>user\n<start_audio>")
    after = tok.decode(ids[where[-1] + 1 :])
    assert after.startswith(text + "<end_audio>\n" + row["prompt"] + "<|im_end|>\n<|im_start|>assistant\n")
    # labels: exactly the response + end of turn, aligned with the input ids; -100 everywhere else
    scored = labels != P.IGNORE
    assert tok.decode(labels[scored]) == row["response"] + tok.eos_token
    assert (labels[scored] == ids[scored]).all()
    assert np.flatnonzero(scored)[0] == len(ids) - scored.sum()  # a suffix
    assert not (scored & mask).any()


def test_over_long_rows_are_truncated_or_skipped(tiny: DestaModel, corpus) -> None:
    row = _speech_rows(corpus[1])[0]
    long_text = " ".join(["word"] * 300)
    full = P.encode(tiny.tokenizer, row["messages"], [long_text], 16, response=row["response"], max_transcript_tokens=100)
    assert len([i for i in full.input_ids]) > 100 and not full.truncated
    cut = P.encode(tiny.tokenizer, row["messages"], [long_text], 16, response=row["response"], max_length=len(full) - 3)
    assert cut.truncated and len(cut) == len(full) - 3
    assert sum(lab != P.IGNORE for lab in cut.labels) == sum(lab != P.IGNORE for lab in full.labels) - 3
    # no room for any response token: the transcript gives way, the response keeps one token
    context = len(full) - sum(lab != P.IGNORE for lab in full.labels)
    squeezed = P.encode(tiny.tokenizer, row["messages"], [long_text], 16, response=row["response"], max_length=context)
    assert squeezed.truncated and len(squeezed) == context and sum(lab != P.IGNORE for lab in squeezed.labels) >= 1
    assert P.encode(tiny.tokenizer, row["messages"], [long_text], 16, response=row["response"], max_length=20) is None


def test_batched_encoding_equals_one_tokenizer_call_per_text(tiny: DestaModel, corpus) -> None:
    """encode_many tokenises a chunk of rows in one backend call (train tokenised ~2x faster at 10^4 rows):
    the ids must be transformers' own per-text ids, special tokens, empty text and non-ASCII included,
    and every row as `encode` makes it alone (cut, squeezed or skipped alike)."""
    tok = tiny.tokenizer
    texts = ["", "plain words.", "<|im_start|>user\nhi<|im_end|>" + tok.eos_token, "naïve café — 東京 🙂", " ", "x" * 3000]
    assert P._ids_many(tok, texts) == [tok(t, add_special_tokens=False)["input_ids"] if t else [] for t in texts]
    rows = corpus[1]
    long_text = " ".join(["word"] * 300)
    variants = [(r["messages"], [a.get("text") for a in P.row_audios(r["messages"])], r["response"]) for r in rows]
    variants += [(rows[0]["messages"], [long_text], rows[0]["response"]), (rows[1]["messages"], [None], None)]
    for max_length in (None, 120, 40, 20):
        one = [P.encode(tok, m, t, 16, response=r, max_length=max_length) for m, t, r in variants]
        assert P.encode_many(tok, variants, 16, max_length, chunk=3) == one
        assert (None in one) == (max_length is not None and max_length <= 40)  # the prompt alone takes over 40


def test_forward_scores_only_response_tokens(tiny: DestaModel, corpus) -> None:
    rows = corpus[1][:3]
    texts = [[r["messages"][1]["audios"][0]["text"]] for r in rows]
    states = tiny.encode([_clip(corpus, r) for r in rows])
    assert states.shape == (3, 2, 1500, 384) and states.dtype == tiny.states_dtype  # bf16 where the CPU has it
    enc = [P.encode(tiny.tokenizer, r["messages"], t, 16, response=r["response"]) for r, t in zip(rows, texts)]
    batch = P.collate(enc, tiny.tokenizer.pad_token_id)
    tiny.eval()
    out = tiny(audio_states=states, **batch)
    # reference: full logits over every position, cross-entropy on the response positions only
    with torch.no_grad(), tiny.autocast():
        embeds = tiny.embed(batch["input_ids"], batch["audio_mask"], states)
        logits = tiny.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits.float()
    y = batch["labels"][:, 1:]
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=P.IGNORE)
    assert out.tokens == int((y != P.IGNORE).sum())
    assert abs(out.loss.item() - ref.item()) < 2e-3
    assert torch.allclose(out.row_logprob.sum(), -out.loss.detach() * out.tokens, rtol=1e-4)
    # gradients reach only the trainable connector
    out.loss.backward()
    grads = {n: p.grad for n, p in tiny.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith("connector.") for n in grads)
    assert all(not p.requires_grad for n, p in tiny.named_parameters() if not n.startswith("connector."))
    tiny.zero_grad(set_to_none=True)


def test_encoder_taps_are_hidden_state_indices(tiny: DestaModel) -> None:
    enc = tiny.encoder
    x = torch.randn(1, 80, 3000)
    with torch.no_grad():
        ref = enc(x, output_hidden_states=True)
        taps = tapped_states(enc, x, [0, 1, 2, 3, 4])
    for k in range(4):  # HF's hidden_states[k], k < n_layers
        assert torch.equal(taps[:, k], ref.hidden_states[k])
    # the last layer is tapped before the final LayerNorm (as the official DeSTA code does)
    assert torch.allclose(enc.layer_norm(taps[:, 4]), ref.last_hidden_state, atol=1e-5)
    with pytest.raises(ValueError, match="encoder layer 5 requested"):
        tapped_states(enc, x, [5])


def test_encoder_cache_roundtrip(tmp_path: Path, tiny: DestaModel, corpus) -> None:
    wav = _clip(corpus, corpus[1][0])
    states = tiny.encode([wav])[0]
    cache = EncoderCache(tmp_path, "a" * 64, [2, 4], tiny.states_dtype)
    key = audio_key(wav)
    assert cache.get(key) is None
    cache.put(key, states)
    assert torch.equal(cache.get(key), states) and (cache.hits, cache.misses) == (1, 1)
    other = EncoderCache(tmp_path, "b" * 64, [2, 4], tiny.states_dtype)  # another encoder never reads it
    assert other.get(key) is None


def test_lora_adds_only_adapter_weights(repo: Path, embedded_models) -> None:
    prof = load_params(repo / "params.yaml").profiles["tiny"]
    cfg = prof.model.model_copy(update={"lora": LoraConfig(enabled=True, r=4, alpha=8)})
    m = DestaModel.from_backbones(DestaSpec(prof.models.whisper, prof.models.llm, cfg), with_decoder=False)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    lora = [n for n in names if "lora_" in n]
    assert len(lora) == 30 * 3 * 2  # 30 layers x q/k/v x A/B
    assert all(n.startswith("connector.") or "lora_" in n for n in names)
    assert all(n.startswith("llm.model.layers.") and n.endswith(".default.weight") for n in lora)


def _official_state(llm: torch.nn.Module, heads: int) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """Trainable weights named as the official release names them, with a Q-Former that is
    transformers' own BertEncoder (built as the official QformerConnector builds it); random values."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    torch.manual_seed(1)
    bert_cfg = BertConfig(num_hidden_layers=2, num_attention_heads=heads, hidden_size=384,
                          add_cross_attention=True, is_decoder=True)
    bert_cfg._attn_implementation = "eager"
    bert = BertEncoder(bert_cfg).eval()
    c = "perception.connector."
    state = {f"{c}qformer.{k}": v.clone() for k, v in bert.state_dict().items()}
    state |= {f"{c}layer_prompts.{i}": torch.randn(1, 8, 384) for i in range(4)}
    state |= {f"{c}layer_weights": torch.randn(8, 4), f"{c}proj.0.weight": 1 + 0.1 * torch.randn(384),
              f"{c}proj.0.bias": 0.1 * torch.randn(384), f"{c}proj.1.weight": 0.02 * torch.randn(576, 384),
              f"{c}proj.1.bias": 0.02 * torch.randn(576)}
    for name, mod in llm.named_modules():  # LoRA r=16 on q/k/v, as `get_peft_model(...).base_model.model` names it
        if name.endswith(("q_proj", "k_proj", "v_proj")):
            state[f"llm_model.{name}.lora_A.default.weight"] = 0.01 * torch.randn(16, mod.in_features)
            state[f"llm_model.{name}.lora_B.default.weight"] = 0.01 * torch.randn(mod.out_features, 16)
    return state, bert


def test_official_layout_loads_and_matches_bert_reference(tmp_path: Path, tiny: DestaModel, corpus) -> None:
    from safetensors.torch import save_file

    from components.model.official import map_official_keys

    state, bert = _official_state(tiny.llm, heads=6)
    d = tmp_path / "official"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({
        "model_type": "desta25", "llm_model_id": "DeSTA-ntu/Llama-3.1-8B-Instruct",
        "encoder_model_id": "openai/whisper-tiny", "connector_mode": "qformer_1", "qformer_num_hidden_layers": 2,
        "prompt_size": 8, "use_lora": True, "audio_locator": "<|AUDIO|>",
        "placeholder_token": "<|reserved_special_token_87|>", "encoder_config": {"encoder_attention_heads": 6},
    }))
    model = DestaModel.from_pretrained(d, whisper=tiny.spec.whisper, llm=tiny.spec.llm, precision="fp32").eval()
    assert model.spec.model.encoder_layers == [1, 2, 3, 4] and model.spec.model.qformer_heads == 6
    assert model.spec.model.lora.enabled and (model.spec.model.lora.r, model.spec.model.lora.alpha) == (16, 16)
    params = dict(model.named_parameters())
    for key, value in state.items():
        mine = key.replace("perception.connector.", "connector.", 1).replace("llm_model.", "llm.", 1)
        assert torch.equal(params[mine].detach().float(), value.float()), key
    # the connector computes what the official QformerConnector computes with BertEncoder
    states = model.encode([_clip(corpus, corpus[1][0])])  # (1, 4, 1500, 384): official layer ids 0..3
    c = "perception.connector."
    with torch.no_grad():
        outs = [bert(hidden_states=state[f"{c}layer_prompts.{i}"], encoder_hidden_states=states[:, i]).last_hidden_state
                for i in range(4)]
        h = (torch.stack(outs, 0).permute(1, 2, 0, 3) * torch.softmax(state[f"{c}layer_weights"], -1).unsqueeze(-1)).sum(2)
        ln = torch.nn.functional.layer_norm(h, (384,), state[f"{c}proj.0.weight"], state[f"{c}proj.0.bias"])
        ref = ln @ state[f"{c}proj.1.weight"].T + state[f"{c}proj.1.bias"]
        got = model.connect(states)
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()
    with pytest.raises(ValueError, match="unexpected key"):
        map_official_keys({"perception.whisper.model.encoder.conv1.weight": torch.zeros(1)})


def test_paper_wiring_on_tiny_random_configs(repo: Path, tiny: DestaModel) -> None:
    """The paper profile's connector (layers 7/15/23/31, 64 queries, its Q-Former) on a randomly
    initialised whisper-large-v3-shaped encoder (32 layers, 128 mels, 20 heads) and a Llama-3.1-shaped
    LLM (GQA, llama3 RoPE scaling), at tiny widths. No downloads."""
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    paper = load_params(repo / "params.yaml").profiles["paper"]
    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration(WhisperConfig(
        d_model=80, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=160, num_mel_bins=128,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, vocab_size=51866, max_source_positions=1500,
    )).eval()
    llm = LlamaForCausalLM(LlamaConfig(
        hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
        vocab_size=len(tiny.tokenizer), rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        max_position_embeddings=131072, tie_word_embeddings=False,
    )).to(torch.bfloat16).eval()
    spec = DestaSpec(paper.models.whisper, paper.models.llm, paper.model)
    model = DestaModel(spec, whisper, llm, tiny.tokenizer, WhisperFeatureExtractor(feature_size=128)).eval()
    assert spec.model.encoder_layers == [8, 16, 24, 32] and spec.model.prompt_size == 64
    assert len(model.connector.layer_prompts) == 4 and model.connector.layer_weights.shape == (64, 4)
    assert len(model.connector.qformer.layer) == paper.model.qformer_layers
    wavs = [np.sin(np.linspace(0, 400 * np.pi, 16000 * s)).astype(np.float32) * 0.1 for s in (1, 2)]
    states = model.encode(wavs)
    assert states.shape == (2, 4, 1500, 80)
    assert model.connect(states).shape == (2, 64, 64)
    msgs = [[{"role": "system", "content": "Focus on the audio clips and instructions."},
             {"role": "user", "content": "<|AUDIO|>\nWhat do you hear?", "audios": [{"audio": "x", "text": t}]}]
            for t in ("a tone", "")]
    enc = [P.encode(model.tokenizer, m, [m[1]["audios"][0]["text"]], 64, response="A steady tone.") for m in msgs]
    out = model(audio_states=states, **P.collate(enc, model.tokenizer.pad_token_id))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.connector.proj[1].weight.grad is not None and model.connector.layer_prompts[3].grad is not None
    text = model.generate([[w] for w in wavs], msgs, max_new_tokens=3)
    assert len(text) == 2


def test_save_load_gives_identical_generations(tmp_path: Path, tiny: DestaModel, corpus) -> None:
    saved = {k: v.clone() for k, v in tiny.connector.state_dict().items()}  # `tiny` is shared: restored below
    try:
        _save_load_gives_identical_generations(tmp_path, tiny, corpus)
    finally:
        tiny.connector.load_state_dict(saved)


def _save_load_gives_identical_generations(tmp_path: Path, tiny: DestaModel, corpus) -> None:
    root, rows = corpus
    with torch.no_grad():  # move away from the init so a silent non-load would show
        for p in tiny.connector.parameters():
            p.add_(0.01 * torch.randn_like(p))
        stats = {k: v.clone() for k, v in tiny._stat_buffers().items()}
        tiny.connector.set_state_stats(torch.randn_like(tiny.connector.state_mean), 1 + torch.rand_like(tiny.connector.state_std))
    tiny.eval()
    msgs = [r["messages"] for r in rows[:4]]
    before = tiny.generate(None, msgs, max_new_tokens=12, data_root=root)
    logp_before = tiny.response_logprobs(None, msgs, [r["response"] for r in rows[:4]], data_root=root)
    out = tiny.save_pretrained(tmp_path / "export")

    from safetensors.torch import load_file

    keys = set(load_file(str(out / "model.safetensors")))
    assert keys == {n for n, p in tiny.named_parameters() if p.requires_grad} | {"connector.state_mean", "connector.state_std"}
    assert all(k.startswith("connector.") for k in keys)
    config = json.loads((out / "config.json").read_text())
    assert (config["whisper"], config["llm"]) == (tiny.spec.whisper, tiny.spec.llm)
    assert (out / "model.safetensors").stat().st_size < 40e6  # the 135M-parameter LLM is not in it

    loaded = DestaModel.from_pretrained(out).eval()
    assert loaded.generate(None, msgs, max_new_tokens=12, data_root=root) == before
    assert loaded.response_logprobs(None, msgs, [r["response"] for r in rows[:4]], data_root=root) == logp_before
    assert loaded.frozen_digest() == tiny.frozen_digest()
    assert torch.equal(loaded.connector.state_std, tiny.connector.state_std)
    state = load_file(str(out / "model.safetensors"))
    del state["connector.state_std"]
    with pytest.raises(ValueError, match="missing.*connector.state_std"):
        loaded.load_trainable(state)
    with torch.no_grad():
        for name, value in stats.items():  # the session fixture back at identity statistics
            tiny.get_buffer(name).copy_(value)


def test_transcripts_come_from_whisper_when_missing(tiny: DestaModel, corpus) -> None:
    root, rows = corpus
    speech = _speech_rows(rows)[0]
    sound = next(r for r in rows if not r["messages"][1]["audios"][0]["text"])
    blank = [[m if m["role"] != "user" else {**m, "audios": [{"audio": m["audios"][0]["audio"], "text": None}]}
              for m in r["messages"]] for r in (speech, sound)]
    _, texts = tiny._inputs(None, blank, root)
    known = speech["messages"][1]["audios"][0]["text"]
    norm = lambda s: "".join(c for c in s.lower() if c.isalnum() or c == " ").split()  # noqa: E731
    assert norm(texts[0]) == norm(known)
    assert texts[1] == ""  # Whisper hears no speech in the bell: no transcript, as in training rows


def test_padding_mask_reads_only_each_clips_own_frames(corpus, tiny: DestaModel) -> None:
    """With `mask_padding`, a clip's audio vectors depend only on its real encoder positions (not on
    Whisper's 30 s padding nor on the other clips of the batch); without it they read all 1500."""
    from components.model.encoder import valid_frames

    wavs = [_clip(corpus, r) for r in _speech_rows(corpus[1])[:2]]
    wavs[1] = wavs[1][: len(wavs[1]) // 2]  # two different lengths in one batch
    frames = valid_frames(wavs)
    assert frames.tolist() == [-(-len(w) // 320) for w in wavs] and int(frames.max()) < 1500
    assert valid_frames([np.zeros(0, np.float32), np.zeros(16000 * 40, np.float32)]).tolist() == [1, 1500]
    conn = tiny.connector  # trainable weights are fp32
    states = tiny.encode(wavs).to(conn.proj[1].weight.dtype)
    noisy = states.clone()
    for i, n in enumerate(frames.tolist()):
        noisy[i, :, n:] = torch.randn_like(noisy[i, :, n:])  # garbage where the padding was
    with torch.no_grad():
        masked = conn(states, frames)
        assert torch.allclose(conn(noisy, frames), masked, atol=1e-5)  # padding is not read
        assert torch.allclose(conn(states[1:], frames[1:]), masked[1:], atol=1e-5)  # batch-independent
        assert not torch.allclose(conn(noisy), conn(states), atol=1e-3)  # unmasked: padding is read
        full = torch.full((2,), 1500)
        assert torch.allclose(conn(states, full), conn(states), atol=1e-5)  # all frames = the official path
    # the model passes the frames on because the tiny profile sets mask_padding
    assert tiny.spec.model.mask_padding
    with torch.no_grad():
        assert torch.allclose(tiny.connect(noisy, frames).float(), tiny.connect(states, frames).float(), atol=1e-2)


def test_state_stats_standardise_the_connector_input(corpus, tiny: DestaModel) -> None:
    """`normalize_states`: statistics over the positions the connector reads (not the padding),
    applied to every input."""
    from components.model.encoder import valid_frames
    from components.model.qformer import Connector

    wavs = [_clip(corpus, r) for r in _speech_rows(corpus[1])[:3]]
    frames = valid_frames(wavs)
    states = tiny.encode(wavs)
    real = torch.cat([states[i, :, : int(n)].float() for i, n in enumerate(frames)], dim=1)  # (L, positions, d)

    conn = tiny.connector
    saved = {k: v.clone() for k, v in tiny._stat_buffers().items()}
    assert torch.equal(saved["connector.state_mean"], torch.zeros_like(saved["connector.state_mean"]))  # identity until fitted
    try:
        noisy = states.clone()
        for i, n in enumerate(frames.tolist()):
            noisy[i, :, n:] = 100 * torch.randn_like(noisy[i, :, n:])
        assert tiny.fit_state_stats([(noisy[:2], frames[:2]), (noisy[2:], frames[2:])]) == 3  # padding not counted
        assert torch.allclose(conn.state_mean, real.mean(1), atol=1e-3, rtol=1e-3)
        assert torch.allclose(conn.state_std, real.std(1, unbiased=False), atol=1e-3, rtol=1e-3)
        # the connector on raw states == an identity-stats connector on states standardised by hand
        plain = Connector(2, conn.state_mean.shape[1], conn.proj[1].out_features, conn.prompt_size,
                          tiny.spec.model.qformer_heads, tiny.spec.model.qformer_layers,
                          tiny.spec.model.qformer_intermediate, 0.0)
        plain.load_state_dict({k: v for k, v in conn.state_dict().items() if not k.startswith("state_")})
        plain.eval()
        x = states.float()
        by_hand = (x - conn.state_mean[None, :, None]) / conn.state_std[None, :, None]
        with torch.no_grad():
            assert torch.allclose(conn(x, frames), plain(by_hand, frames), atol=1e-4)
            assert not torch.allclose(conn(x, frames), plain(x, frames), atol=1e-2)
        with pytest.raises(ValueError, match="std > 0"):
            conn.set_state_stats(conn.state_mean, torch.zeros_like(conn.state_std))
        with pytest.raises(ValueError, match="shape"):
            conn.set_state_stats(conn.state_mean[:1], conn.state_std[:1])
        with pytest.raises(ValueError, match="normalize_states"):
            plain.set_state_stats(conn.state_mean, conn.state_std)
        with pytest.raises(ValueError, match="no encoder states"):
            tiny.fit_state_stats([])
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                tiny.get_buffer(name).copy_(value)


def test_model_runs_the_precision_this_cpu_supports(tiny):
    """bf16 (the default) on a CPU without native bf16 builds an fp32 model: no emulated bf16 anywhere."""
    from components.precision import resolve

    want = resolve("bf16")
    assert tiny.precision == want
    assert next(tiny.llm.parameters()).dtype == (torch.bfloat16 if want == "bf16" else torch.float32)
    assert tiny.states_dtype == next(tiny.llm.parameters()).dtype
