"""Peak memory per round (seal_repro/memory.py): measured over the block alone, not since the process started,
and reported with every round's result and in the stage summaries."""

from __future__ import annotations

import mmap
import sys

import pytest

from seal_repro.data.records import Passage, Question
from conftest import inner_loop_spec, kit_of
from seal_repro.engine import LoraEngine
from seal_repro.knowledge.inner_loop import Job, Round, compute_round, peak_memory_of
from seal_repro.memory import PeakMemory, without_measurements
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec

MB = 1 << 20
PASSAGE = Passage("p-1", "Quorvel", "the bridge was built in 1901 by the river",
                  (Question("p-1-q0", "when was the bridge built", "1901"),))
ROUND = Round("passage", PASSAGE, 0, None, 0, ("the bridge was built in 1901 by the river",))


@pytest.fixture
def engine(tiny_model_dir):
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    return LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj")))


def _touch(n_mb: int) -> None:
    """Make n_mb of new memory resident, then give it back (an anonymous map: not heap the process may keep)."""
    buf = mmap.mmap(-1, n_mb * MB)
    for offset in range(0, n_mb * MB, 4096):
        buf[offset] = 1  # resident only once written
    buf.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-block reset needs /proc/self/clear_refs")
def test_each_block_reports_its_own_peak():
    with PeakMemory("cpu") as big:
        _touch(400)
    with PeakMemory("cpu") as small:
        _touch(8)
    assert not big.rss_since_start and not small.rss_since_start
    assert big.rss_mb >= small.rss_mb + 300  # the second block does not inherit the first one's peak
    assert big.as_dict()["peak_gpu_mb"] == 0.0 and "rss_since_start" not in big.as_dict()


def test_a_round_reports_its_peak_memory_and_stages_take_the_largest(engine):
    result = compute_round(kit_of(engine, lambda ids: []), Job(ROUND, inner_loop_spec(epochs=1, lr=1e-2)))
    mem = result["memory"]
    assert mem["peak_rss_mb"] > 50 and mem["peak_gpu_mb"] == 0.0  # python + torch + the model, on a CPU
    other = {**result, "memory": {"peak_rss_mb": mem["peak_rss_mb"] + 100, "peak_gpu_mb": 0.0}}
    assert peak_memory_of([result, other, {"memory": None}]) == {
        "round_peak_rss_mb": mem["peak_rss_mb"] + 100, "round_peak_gpu_mb": 0.0}
    assert peak_memory_of([]) == {"round_peak_rss_mb": None, "round_peak_gpu_mb": None}
    assert without_measurements([result]) == without_measurements([other])  # a measurement, not a result
