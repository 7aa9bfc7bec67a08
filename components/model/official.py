"""Read the official DeSTA2.5-Audio release layout (github.com/kehanlu/DeSTA2.5-Audio).

The release's `model.safetensors` holds only trainable weights, named after its modules:
`perception.connector.{layer_prompts.N, layer_weights, qformer.layer.…, proj.0/1}` and, with LoRA,
`llm_model.model.layers.N.self_attn.{q,k,v}_proj.lora_{A,B}.default.weight`. Its `config.json`
(`model_type: desta25`) names the backbones and the connector's shape; the tapped layers and the
Q-Former's heads follow from the encoder, as in its `QformerConnector`:
- target layer ids are 0-based encoder layer numbers (their k = hidden state k + 1 here);
- heads = the encoder's attention heads; FFN = BertConfig's 3072; dropout 0.1;
- LoRA (when `use_lora`): r 16, alpha 16, dropout 0.1 on q/k/v.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.config import LoraConfig, ModelConfig
from components.model.backbones import WEIGHTS_FILE, DestaSpec

# QformerConnector's table (encoder model id -> 0-based target layer ids).
TARGET_LAYER_IDS = {
    "openai/whisper-medium": [5, 11, 17, 23],
    "openai/whisper-small": [2, 5, 8, 11],
    "openai/whisper-tiny": [0, 1, 2, 3],
    "openai/whisper-large-v3": [7, 15, 23, 31],
}
PREFIXES = {"perception.connector.": "connector.", "llm_model.": "llm."}


def _encoder_heads(config: dict[str, Any], whisper: str) -> int:
    enc = config.get("encoder_config")
    if isinstance(enc, dict) and "encoder_attention_heads" in enc:
        return int(enc["encoder_attention_heads"])
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(whisper).encoder_attention_heads)


def official_model_config(config: dict[str, Any], whisper: str) -> ModelConfig:
    encoder_id = config.get("encoder_model_id", "openai/whisper-large-v3")
    if encoder_id not in TARGET_LAYER_IDS:
        raise ValueError(f"official DeSTA config names encoder {encoder_id!r}; known: {sorted(TARGET_LAYER_IDS)}")
    if config.get("connector_mode", "qformer_1") != "qformer_1":
        raise ValueError(f"official connector_mode {config['connector_mode']!r} is not supported (only qformer_1)")
    return ModelConfig(
        encoder_layers=[i + 1 for i in TARGET_LAYER_IDS[encoder_id]],
        prompt_size=int(config.get("prompt_size", 64)),
        qformer_layers=int(config.get("qformer_num_hidden_layers", 2)),
        qformer_heads=_encoder_heads(config, whisper),
        qformer_intermediate=3072,
        qformer_dropout=0.1,
        max_transcript_tokens=100,
        lora=LoraConfig(enabled=bool(config.get("use_lora", False)), r=16, alpha=16, dropout=0.1,
                        target_modules=["q_proj", "k_proj", "v_proj"]),
    )


def map_official_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Official trainable-weight names -> this model's names; unknown names are an error."""
    out = {}
    for key, value in state.items():
        for old, new in PREFIXES.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise ValueError(f"unexpected key in an official DeSTA checkpoint: {key!r}")
    return out


def official_parts(path: Path, config: dict[str, Any], whisper: str | None = None,
                   llm: str | None = None) -> tuple[DestaSpec, dict[str, Any]]:
    """(spec, trainable weights in this model's names) of an official release directory (config.json +
    model.safetensors); `whisper`/`llm` override the backbones it names (e.g. local copies of the same models)."""
    from safetensors.torch import load_file

    whisper = whisper or config.get("encoder_model_id", "openai/whisper-large-v3")
    llm = llm or config.get("llm_model_id", "DeSTA-ntu/Llama-3.1-8B-Instruct")
    spec = DestaSpec(whisper, llm, official_model_config(config, whisper))
    return spec, map_official_keys(load_file(str(path / WEIGHTS_FILE)))
