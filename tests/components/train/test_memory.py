"""The ZeRO memory calculation: parameter formulas checked against real modules, then the paper table."""

from __future__ import annotations

from pathlib import Path

from components.config import load_params
from components.model.qformer import Connector
from components.train.memory import (backbone_config, connector_params, encoder_params, format_table, llm_params,
                                     memory_table)


def test_parameter_formulas_match_real_modules(repo: Path, embedded_models) -> None:
    from transformers import AutoModelForCausalLM, WhisperForConditionalGeneration

    params = load_params(repo / "params.yaml").profiles
    tiny, paper = params["tiny"], params["paper"]
    whisper = WhisperForConditionalGeneration.from_pretrained(repo / tiny.models.whisper)
    assert encoder_params(backbone_config(str(repo / tiny.models.whisper))) == sum(p.numel() for p in whisper.model.encoder.parameters())
    llm = AutoModelForCausalLM.from_pretrained(repo / tiny.models.llm)
    assert llm_params(backbone_config(str(repo / tiny.models.llm))) == sum(p.numel() for p in llm.parameters())
    m = paper.model  # the paper's connector at full size: 4 taps x 64 queries, 1280 -> 4096
    real = Connector(len(m.encoder_layers), 1280, 4096, m.prompt_size, m.qformer_heads, m.qformer_layers,
                     m.qformer_intermediate, m.qformer_dropout)
    assert connector_params(m, 1280, 4096) == sum(p.numel() for p in real.parameters())


def test_paper_profile_on_8x80gb(repo: Path) -> None:
    t = memory_table(load_params(repo / "params.yaml").profiles["paper"], gpus=8, gpu_gb=80)
    assert round(t["params"]["llm"] / 1e9, 2) == 8.03 and round(t["params"]["whisper_encoder"] / 1e9, 2) == 0.64
    rows = {r["mode"].split()[0]: r for r in t["rows"]}
    assert rows["ZeRO-3"]["total"] < rows["ZeRO-2"]["total"] < rows["ZeRO-0"]["total"]
    assert rows["ZeRO-3"]["frozen_llm"] == rows["ZeRO-2"]["frozen_llm"] / 8  # only ZeRO-3 shards the frozen LLM
    assert all(r["fits"] for r in t["rows"])
    print("\n" + format_table(t))
