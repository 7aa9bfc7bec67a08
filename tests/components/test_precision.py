"""Precision resolution: bf16 runs only where the CPU has native bf16 kernels."""

import logging

import torch

from components import precision


def test_fp32_and_accelerators_pass_through():
    assert precision.resolve("fp32") == "fp32"
    assert precision.resolve("bf16", device="cuda") == "bf16"
    assert precision.resolve("fp16", device="cuda") == "fp16"


def test_bf16_on_cpu_follows_the_hardware(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve("bf16") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    precision._warn_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="components.precision"):
        assert precision.resolve("bf16") == "fp32"
        assert precision.resolve("bf16") == "fp32"
    assert sum("running fp32" in r.message for r in caplog.records) == 1  # warned once per process


def test_this_cpu_is_read_from_onednn():
    assert precision.cpu_has_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
