"""`seal-repro bench gpu --config tiny` on a CPU: every phase runs and the report has the fields the GPU check is
for — s/round of the engine and of the reference protocol, batched rounds, peak memory, training MFU and FLOP/s,
sampling tokens/s — with finite positive values; and `seal-repro plan --rates` reads the file it writes.
About 10 s (a 2-layer model of width 64, a few tokens a phase)."""

from __future__ import annotations

import json
import math

import pytest

from conftest import REPO
from seal_repro.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu") / "gpu.json"
    assert main(["bench", "gpu", "--config", "tiny", "--device", "cpu", "--no-vllm", "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


def _positive(data: dict, key: str) -> float:
    value = data[key]
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{key}={value!r}"
    return value


def test_report_has_the_gpu_check_fields(report):
    data, _ = report
    assert data["config"] == "tiny" and data["device"] == "cpu" and data["gpu"] == "none"
    assert data["vllm"] == "skipped (--no-vllm)"
    # s/round: the engine's and the reference protocol's (extrapolated to the spec's epochs), and the speed-up
    for key in ("engine_round_seconds", "reference_round_seconds", "reference_fixed_seconds",
                "engine_speedup_vs_reference"):
        _positive(data, key)
    assert math.isfinite(data["reference_epoch_seconds"])  # a difference of two timings: tiny, may be noise
    assert data["reference_round_seconds"] == pytest.approx(
        data["reference_fixed_seconds"] + data["epochs"] * data["reference_epoch_seconds"])
    # batched rounds (TINY_SCALE: B = 1, 2)
    for key in ("batched_rounds_per_s_b1", "batched_rounds_per_s_b2", "batched_speedup_b2", "batched_train_mfu_b2",
                "batched_peak_memory_mb_b1", "batched_peak_memory_mb_b2"):
        _positive(data, key)
    # peak memory: per phase and overall (the process's RSS peak on a CPU)
    phases = ["reference_peak_memory_mb", "engine_peak_memory_mb", "cpt_peak_memory_mb_checkpointed",
              "cpt_peak_memory_mb_plain"]
    assert _positive(data, "peak_memory_mb") >= max(_positive(data, k) for k in phases)
    # training MFU and the FLOP/s it is a share of
    peak = _positive(data, "peak_flops_per_s")
    assert data["peak_flops_source"] == "measured"
    for key in ("engine_train_mfu", "reference_train_mfu", "cpt_train_mfu_checkpointed", "cpt_train_mfu_plain"):
        assert 0 < _positive(data, key) < 1.5, key  # a share of the measured matmul peak
    flops = 4 * data["n_matmul_params"] * data["engine_round_tokens"] / data["engine_round_seconds"]
    assert data["engine_train_mfu"] * peak == pytest.approx(flops)
    # sampling tokens/s: the spec's evaluation batch (16) and TINY_SCALE's large batch (8)
    assert {k for k in data if k.startswith("hf_generate_tokens_per_s_b")} == \
        {"hf_generate_tokens_per_s_b8", "hf_generate_tokens_per_s_b16"}
    for key in ("hf_generate_tokens_per_s_b8", "hf_generate_tokens_per_s_b16", "cpt_step_seconds_checkpointed",
                "cpt_step_seconds_plain", "build_seconds", "total_seconds"):
        _positive(data, key)
    assert data["n_params"] >= data["n_matmul_params"] > 0


def test_plan_reads_the_bench_file(report, capsys):
    _, path = report
    assert main(["plan", str(REPO / "specs/knowledge/paper-qwen2.5-7b.yaml"), "--rates", str(path)]) == 0
    out = capsys.readouterr().out
    assert "measured by `seal-repro bench gpu`" in out and "config tiny" in out and "= total" in out
