"""Portable CPU numerics: the kernel path every CPU run takes unless asked otherwise.

A float32 round on a CPU follows the kernels the CPU offers, and at the embedded default's learning rates a
last-bit difference changes answers: the same commit gave teacher-synthetic 70 % on one machine and 60 % on
another. `seal-repro bench numerics` (docs/BENCHMARKS.md, "CPU numerics across kernel paths") measured which
switches make a round's adapter independent of the instruction set: only the pair below does — ATen's vectorised
kernels capped at AVX2 *and* MKL's SGEMM pinned to its AVX2 branch (either alone still differs). With both, this
machine's native (AVX-512/AMX), AVX-512 and AVX2 paths trained byte-identical adapters, at 1.15-1.3x the native
round time; on a CPU whose best path is AVX2 the pin costs nothing. So the pin is the default on every x86 CPU
with AVX2 and FMA; `SEAL_REPRO_CPU_NUMERICS=native` turns it off (faster, bit-identical only on the same CPU),
and a variable the user set already is never overwritten.

Both libraries read their variable once, when they first choose a kernel, so `pin()` runs when `seal_repro` is
imported (`seal_repro/__init__.py`), before any stage, worker or test has run a tensor op. What a process really
got is `signature()`: it goes into every memo key (rounds computed on another path are never reused) and into
provenance. Why by hand: neither PyTorch nor MKL has an API to set these after start-up, and no library does it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

SWITCH = "SEAL_REPRO_CPU_NUMERICS"
MODES = ("portable", "native")
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def mode(environ: MutableMapping[str, str] = os.environ) -> str:
    """The requested mode: `portable` unless SEAL_REPRO_CPU_NUMERICS says `native` (any other value: portable,
    with a warning from `pin`)."""
    return "native" if environ.get(SWITCH, "portable").strip().lower() == "native" else "portable"


def pin(environ: MutableMapping[str, str] = os.environ, flags: set[str] | None = None,
        machine: str | None = None) -> dict[str, str]:
    """Set PORTABLE_ENV in `environ` where the user has not set the variable; returns what it set. Nothing on a
    CPU without AVX2+FMA (ARM, old x86: its own path is already the portable one or none exists) or in native
    mode."""
    requested = environ.get(SWITCH)
    if requested is not None and requested.strip().lower() not in MODES:
        import warnings

        warnings.warn(f"{SWITCH}={requested!r} is not one of {', '.join(MODES)}: using portable", stacklevel=2)
    if mode(environ) == "native":
        return {}
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return {}
    flags = _cpu_flags() if flags is None else flags
    if not {"avx2", "fma"} <= flags:
        return {}
    done = {}
    for key, value in PORTABLE_ENV.items():
        if key not in environ:
            environ[key] = value
            done[key] = value
    return done


def signature() -> dict[str, str | None]:
    """The CPU kernel path this process runs on: ATen's capability as PyTorch reports it (after any cap) and the
    MKL switches. Part of every memo key and of provenance."""
    import torch

    return {"aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR"),
            "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS")}
