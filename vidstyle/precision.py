"""Which reduced precision a device runs well: fp16 on CUDA, bf16 on CPUs with native bf16 maths.

``resolve(precision, device)`` turns the user's ``auto|fp32|bf16|fp16`` into a torch dtype
(``None`` meaning plain fp32), with one clear error where the device cannot do what was asked.
``int8`` is not a torch dtype: the engines handle it (OpenVINO on the CPU, ``vidstyle.quantize``), and
live mode's ``auto`` picks it on x86 CPUs with AVX2 or more (``cpu_runs_int8``).
"""
from __future__ import annotations

import functools

from .errors import VidstyleError

CHOICES = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX-512 BF16 or AMX), where bf16 is about 2x fp32.
    Asks PyTorch where it is installed, else reads /proc/cpuinfo (the light install)."""
    torch = _torch()
    probe = None if torch is None else getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None:
        try:
            if probe():
                return True
        except Exception:  # noqa: BLE001 - a probe, never fatal
            pass
    amx = None if torch is None else getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx is not None:
        try:
            if amx():
                return True
        except Exception:  # noqa: BLE001
            pass
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def cpu_runs_int8() -> bool:
    """True on x86 CPUs with AVX2 or AVX-512 (PyTorch's own probe), where OpenVINO's int8 kernels pay.

    Measured: about 1.6x bf16 with AVX-512 VNNI, and 1.65x fp32 on an AVX2 CPU without VNNI or bf16
    (docs/PERFORMANCE.md); without VNNI, NNCF's overflow fix on every layer gave the same pictures.
    """
    torch = _torch()
    try:
        if torch is not None:
            return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        with open("/proc/cpuinfo") as fh:
            return " avx2" in fh.read()
    except Exception:  # noqa: BLE001 - a probe, never fatal
        return False


def _torch():
    """torch when this install has it (``vidstyle.extras.has_torch``), else None."""
    from .extras import has_torch

    if not has_torch():
        return None
    import torch

    return torch


def choose(precision: str, device_type: str) -> str:
    """``--precision`` (auto|fp32|bf16|fp16) on a ``device_type`` ("cpu" or "cuda") -> "fp32", "bf16" or "fp16":
    ``auto`` is fp16 on CUDA, bf16 on a CPU that has it, else fp32. Without PyTorch (the light painter too)."""
    p = (precision or "auto").lower()
    if p not in CHOICES:
        raise VidstyleError(f"--precision must be one of {', '.join(CHOICES)}, not {precision!r}")
    if p == "auto":
        return "fp16" if device_type == "cuda" else "bf16" if cpu_has_bf16() else "fp32"
    if p == "fp16" and device_type != "cuda":
        raise VidstyleError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    return p


def resolve(precision: str, device: torch.device) -> torch.dtype | None:
    """``choose``'s answer as a torch dtype (``None`` for fp32)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choose(precision, device.type)]


def name(dtype: torch.dtype | None) -> str:
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
