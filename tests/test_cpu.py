"""seal_repro/cpu.py: the allocator settings keep freed tensors' pages; release_free_memory hands them back."""

import subprocess
import sys

import pytest

from seal_repro import cpu

pytestmark = pytest.mark.skipif(cpu._libc() is None, reason="glibc only")

SCRIPT = r"""
import os, torch
from seal_repro.cpu import release_free_memory, tune_allocator

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

assert tune_allocator()
before = rss_mb()
x = torch.ones(50_000_000)  # 200 MB: below the raised mmap threshold, so on the heap
del x
kept = rss_mb()
assert release_free_memory()
print(before, kept, rss_mb())
"""


def test_freed_heap_is_kept_until_released():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    before, kept, released = map(float, out.split())
    assert kept - before > 150  # the freed tensor's pages stayed in the process (no trim after the step)
    assert kept - released > 150  # and malloc_trim gave them back
