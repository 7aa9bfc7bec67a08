"""Which precision actually runs: bf16 only where the hardware has native bf16 kernels.

On a CPU without AVX512/AMX (an AVX2-only AMD EPYC here) oneDNN emulates bf16 and a 512x512
matmul runs ~35x slower than fp32 (measured, 1 thread), so bf16 asked for on such a CPU runs fp32.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 matmuls natively (oneDNN's check: AVX512 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: decide by the ISA torch dispatches to
        return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX", "AVX2")


@functools.cache
def _warn_fallback() -> None:
    log.warning("precision bf16 asked for, but this CPU (%s) has no native bf16 kernels: running fp32 "
                "(bf16 would be emulated, ~35x slower)", torch.backends.cpu.get_cpu_capability())


def resolve(precision: str, device: str = "cpu") -> str:
    """The precision to run: `precision`, except bf16 on a CPU without native bf16 -> fp32."""
    if precision == "bf16" and device == "cpu" and not cpu_has_bf16():
        _warn_fallback()
        return "fp32"
    return precision
