"""Process-wide settings for training on a CPU.

Why by hand: glibc's malloc hands every block above its mmap threshold (128 KiB at first, at most 32 MiB) to a
fresh `mmap`, and gives the top of its heap back to the system once 128 KiB lie free there. A training step
allocates and frees hundreds of activation and gradient tensors of 0.1-50 MB, so with those defaults most of
them land on new pages, and the kernel faults in and zeroes every 4 KiB page before an element-wise op or a
matmul can write it: a third of a `y + a @ b` on SmolLM2's (250 x 1536) activations, measured on this project's
2-core machine. Raising both limits keeps freed blocks in the heap for the next step. Neither PyTorch nor the
standard library exposes these knobs (the `MALLOC_*_` environment variables are read only at process start,
too late for a stage that is already running), so we call `mallopt` through ctypes. The cost: the process keeps
its peak heap instead of returning it between steps.

That kept heap has one cost of its own: a forked copy (seal_repro/executor.py) shares the parent's pages, so
its first step writes its activations into pages it must first copy from the parent's (a copy-on-write fault
per 4 KiB page, ~700 MB of them for a SmolLM2 round). Measured on the 2-core machine, with two copies of a
stage that had trained a round: each copy's first round took 7.0 s against 4.1-4.2 s for its later ones. So
`release_free_memory` hands the free pages back (glibc's `malloc_trim`) just before forking; a copy then gets
fresh zeroed pages, which cost far less than copies (its first round: 4.5-4.7 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap (SmolLM2-135M's logits: ~50 MB); mallopt takes an int
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap instead of handing it back after every step
TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time

_tuned: bool | None = None


@functools.cache
def _libc():
    """glibc with `mallopt` and `malloc_trim` typed, or None elsewhere (macOS, musl): these knobs are glibc's."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def tune_allocator() -> bool:
    """Keep freed tensors' memory in this process (see the module docstring); True if applied. Once per process,
    a no-op off glibc (macOS, musl); forked copies inherit it."""
    global _tuned
    if _tuned is None:
        _tuned = False
        libc = _libc()
        if libc is not None:
            _tuned = all(libc.mallopt(p, v) == 1 for p, v in (
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    return _tuned


def release_free_memory() -> bool:
    """Hand the free pages of this process's heap back to the kernel (before forking copies of it: see the
    module docstring); True if glibc did. Freed tensors only: nothing in use moves. A no-op off glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
