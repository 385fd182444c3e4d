"""What the CPU can do, from ``/proc/cpuinfo``: the instruction-set flags that decide the encoder's defaults."""

from __future__ import annotations

from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""Instruction sets with bf16 dot products (AVX-512 BF16: Cooper Lake, Zen 4 and later; AMX: Sapphire Rapids
and later). Without them oneDNN emulates bf16 and the ViT-B/16 tower ran 4-12x slower than fp32."""


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU (or these ``flags``) multiplies bf16 natively: AVX-512 BF16 or AMX."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_FLAGS)


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The first CPU's model name in ``/proc/cpuinfo`` (``platform.processor()`` elsewhere, or ``unknown``)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("model name", "Model", "Hardware") and value.strip():
            return " ".join(value.split())
    import platform

    return platform.processor() or platform.machine() or "unknown"
