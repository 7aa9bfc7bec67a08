"""Precision resolution: bf16 runs only where the CPU has native bf16 kernels."""

import logging
import re
from pathlib import Path

import pytest

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


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the CPU flags from Linux /proc/cpuinfo")
def test_this_cpu_matches_its_instruction_set():
    """Checked against the kernel's CPU flags, not torch: oneDNN has native bf16 kernels with AVX512
    (core: BW, VL, DQ) or AMX-BF16, and emulates bf16 on anything less (AVX2)."""
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    native = {"avx512bw", "avx512vl", "avx512dq"} <= flags or "amx_bf16" in flags
    assert precision.cpu_has_bf16() == native
    assert precision.resolve("bf16") == ("bf16" if native else "fp32")
