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

Across vendors the default is not enough: MKL's AVX2 branch exists only on Intel CPUs, and on an AMD CPU MKL
runs its AUTO branch, the CPU's own kernels (Intel's guide, "Specifying Code Branches"; measured on an AMD EPYC:
the bench round's adapter differs from the Xeon's, and a full `make repro` matched the Xeon's numbers except 3
teacher-synthetic rounds). `signature()` then names the CPU, so such rounds never share a memo key with
another CPU's. `SEAL_REPRO_CPU_NUMERICS=x86` (X86_ENV) gave the same adapter on both vendors, at 2.2-2.6x.

Both libraries read their variable once, when they first choose a kernel, so `pin()` runs when `seal_repro` is
imported (`seal_repro/__init__.py`), before any stage, worker or test has run a tensor op. What a process really
got is `signature()`: it goes into every memo key (rounds computed on another path are never reused) and into
provenance. Why by hand: neither PyTorch nor MKL has an API to set these after start-up, and no library does it.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import MutableMapping

SWITCH = "SEAL_REPRO_CPU_NUMERICS"
MODES = ("portable", "x86", "native")
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
# `x86`: ATen's scalar kernels and MKL's COMPATIBLE (SSE2) branch, the one fixed branch MKL runs on every x86
# vendor. Measured: the same adapter bytes on an Intel Xeon (AVX-512/AMX, AVX-512, AVX2 and SSE4.2 paths) and an
# AMD EPYC, at 2.2-2.6x the native round time (docs/BENCHMARKS.md, "Across CPU vendors").
X86_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def parse_cpu_info(text: str) -> dict[str, str]:
    """The first processor's `key: value` fields of a /proc/cpuinfo text (blocks are separated by blank lines)."""
    first = text.strip().split("\n\n", 1)[0]
    return {key.strip(): value.strip() for key, sep, value in (line.partition(":") for line in first.splitlines())
            if sep}


@functools.cache
def _read_cpu_info() -> tuple[tuple[str, str], ...]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return tuple(parse_cpu_info(f.read()).items())
    except OSError:
        return ()


def cpu_info() -> dict[str, str]:
    """The first processor's fields in Linux /proc/cpuinfo (`vendor_id`, `model name`, `flags`, ...); {} where the
    file is not there. The package's one reader of that file (numerics, provenance, `bench numerics`); read once
    per process, as the CPU does not change while it runs."""
    return dict(_read_cpu_info())


def cpu_flags() -> set[str]:
    """The first processor's instruction-set flags (x86 `flags`); empty where /proc/cpuinfo has none."""
    return set(cpu_info().get("flags", "").split())


def mode(environ: MutableMapping[str, str] = os.environ) -> str:
    """The requested mode: `portable` unless SEAL_REPRO_CPU_NUMERICS says `x86` or `native` (any other value:
    portable, with a warning from `pin`)."""
    requested = environ.get(SWITCH, "portable").strip().lower()
    return requested if requested in MODES else "portable"


def pin(environ: MutableMapping[str, str] = os.environ, flags: set[str] | None = None,
        machine: str | None = None) -> dict[str, str]:
    """Set the mode's variables (PORTABLE_ENV, or X86_ENV in `x86` mode) in `environ` where the user has not set
    them; returns what it set. Nothing in native mode, off x86, or in portable mode on a CPU without AVX2+FMA (an
    old x86: its own path is already the portable one)."""
    requested = environ.get(SWITCH)
    if requested is not None and requested.strip().lower() not in MODES:
        import warnings

        warnings.warn(f"{SWITCH}={requested!r} is not one of {', '.join(MODES)}: using portable", stacklevel=2)
    if mode(environ) == "native":
        return {}
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return {}
    wanted = X86_ENV if mode(environ) == "x86" else PORTABLE_ENV
    flags = cpu_flags() if flags is None else flags
    if wanted is PORTABLE_ENV and not {"avx2", "fma"} <= flags:
        return {}
    done = {}
    for key, value in wanted.items():
        if key not in environ:
            environ[key] = value
            done[key] = value
    return done


def cpu_identity() -> tuple[str | None, str | None]:
    """(vendor_id, model name) of the first CPU in /proc/cpuinfo; (None, None) where there is none."""
    info = cpu_info()
    return info.get("vendor_id"), info.get("model name")


def mkl_branch(cbwr: str | None, vendor: str | None) -> str | None:
    """The MKL code branch a process runs for MKL_CBWR=`cbwr` on a CPU of `vendor`: None when CNR is off. Intel's
    guide ("Specifying Code Branches"): branches other than AUTO and COMPATIBLE exist only on Intel processors, and
    MKL silently runs AUTO elsewhere, whose kernels are the CPU's own (measured on an AMD EPYC: MKL_CBWR=AVX2, AUTO
    and no MKL_CBWR give the same SGEMM bits; docs/BENCHMARKS.md)."""
    if cbwr is None:
        return None
    branch = cbwr.split(",")[0].strip().upper()
    branch = branch.removeprefix("BRANCH=")
    if vendor != "GenuineIntel" and branch not in ("AUTO", "COMPATIBLE"):
        return "AUTO"
    return branch


def signature(environ: MutableMapping[str, str] = os.environ, cpu: tuple[str | None, str | None] | None = None
              ) -> dict[str, str | None]:
    """The CPU kernel path this process runs on: ATen's capability as PyTorch reports it (after any cap) and the
    MKL switches. Part of every memo key and of provenance. Where MKL's branch is not pinned to one every CPU of
    the family runs alike (no CNR, AUTO, or an Intel-only branch on another vendor's CPU) the kernels are this
    CPU's own, so the CPU's vendor and model are part of the path too. An Intel CPU under the portable pin keeps
    the three keys it always had, so its memo entries stay valid."""
    import torch

    sig: dict[str, str | None] = {"aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                  "mkl_cbwr": environ.get("MKL_CBWR"),
                                  "mkl_enable_instructions": environ.get("MKL_ENABLE_INSTRUCTIONS")}
    vendor, model = cpu_identity() if cpu is None else cpu
    branch = mkl_branch(sig["mkl_cbwr"], vendor)
    if branch in (None, "AUTO"):
        sig["mkl_branch"] = branch or "none"
        sig["cpu"] = f"{vendor} {model}" if vendor or model else None
    return sig
