"""Which precision actually runs: bf16 only where the CPU has bf16 instructions.

Without them oneDNN emulates bf16: on an AVX2-only AMD EPYC a 512x512 matmul ran ~35x slower than fp32
(measured, 1 thread), and on an AVX512 CPU without AVX512-BF16 the CI's training tests ran past their
10-minute limits in bf16. So bf16 asked for on such a CPU runs fp32.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16).

    Not oneDNN's `_is_mkldnn_bf16_supported`: that is true on any AVX512 CPU, where bf16 is emulated.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@functools.cache
def _warn_fallback() -> None:
    log.warning("precision bf16 asked for, but this CPU (%s) has no bf16 instructions (AVX512-BF16 or AMX): "
                "running fp32 (bf16 would be emulated, many times slower)", torch.backends.cpu.get_cpu_capability())


def resolve(precision: str, device: str = "cpu") -> str:
    """The precision to run: `precision`, except bf16 on a CPU without bf16 instructions -> fp32."""
    if precision == "bf16" and device == "cpu" and not cpu_has_bf16():
        _warn_fallback()
        return "fp32"
    return precision
