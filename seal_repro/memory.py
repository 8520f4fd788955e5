"""Measurements of a round that are not its result: peak memory of one block of work (the process's resident set,
the GPU's allocations), and `without_measurements` to compare two computations of the same rounds.

Why by hand: the usual counters only ever grow — `ru_maxrss` and `VmHWM` hold the process's peak since it
started, so the second round of a stage would report the first's. Linux resets `VmHWM` to the current resident
set when "5" is written to /proc/self/clear_refs; torch resets its GPU peak with `reset_peak_memory_stats`.
Where the reset is unavailable (not Linux), the resident figure is the process's peak so far and says so.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path
from typing import Sequence

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _hwm_mb() -> float | None:
    try:
        m = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def _reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """`with PeakMemory(device) as peak: ...` then `peak.as_dict()`: `peak_rss_mb`, the process's peak resident
    memory during the block (model weights included; `rss_since_start` True where it could not be reset, so it
    is the peak since the process started), and `peak_gpu_mb`, torch's peak allocated memory on a CUDA device
    during the block (0 on a CPU)."""

    def __init__(self, device="cpu"):
        self.cuda = getattr(device, "type", str(device)).startswith("cuda")
        self.rss_mb = self.gpu_mb = 0.0
        self.rss_since_start = True

    def __enter__(self) -> PeakMemory:
        self.rss_since_start = not (sys.platform.startswith("linux") and _reset_hwm())
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        hwm = _hwm_mb()
        if hwm is None:  # no /proc: getrusage's peak (KiB on Linux, bytes on macOS)
            scale = 1 / (1 << 20) if sys.platform == "darwin" else 1 / 1024
            hwm, self.rss_since_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, True
        self.rss_mb = hwm
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.gpu_mb = torch.cuda.max_memory_allocated() / (1 << 20)

    def as_dict(self) -> dict:
        out = {"peak_rss_mb": round(self.rss_mb, 1), "peak_gpu_mb": round(self.gpu_mb, 1)}
        if self.rss_since_start:
            out["rss_since_start"] = True
        return out


def without_measurements(records: Sequence[dict]) -> list[dict]:
    """Round records without what two computations of the same round may differ in — the training's wall-clock
    seconds of training and answering and the round's peak memory — for checking that two executors computed the same rounds."""
    def strip(r: dict) -> dict:
        out = {k: v for k, v in r.items() if k != "memory"}
        for timed in ("train", "answer"):
            if out.get(timed):
                out[timed] = {k: v for k, v in out[timed].items() if k != "seconds"}
        return out

    return [strip(r) for r in records]
