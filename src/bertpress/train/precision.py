"""Which autocast precision a run uses: ``train.mixed_precision`` as written, or ``auto`` resolved on this machine."""

from __future__ import annotations

from pathlib import Path

import torch

#: CPU flags of native bf16 matrix arithmetic (without them autocast emulates bf16, slower than fp32)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The native-bf16 flags of this CPU (empty: none, or no ``/proc/cpuinfo`` to read them from)."""
    try:
        line = next((x for x in cpuinfo.read_text().splitlines() if x.startswith("flags")), "")
    except OSError:
        return []
    return sorted(set(NATIVE_BF16_FLAGS) & set(line.split()))


def resolve_precision(value: str, *, cpu: bool = False) -> str:
    """``no``, ``bf16`` or ``fp16``: ``auto`` becomes bf16 on a CUDA GPU that supports it (unless ``cpu``) or on a CPU
    with native bf16 (:data:`NATIVE_BF16_FLAGS`), else no."""
    if value != "auto":
        return value
    if torch.cuda.is_available() and not cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if native_bf16_cpu() else "no"
