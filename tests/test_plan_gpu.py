"""`seal-repro plan --gpu / --rates / --workers`: GPU-hours per stage from presets or a bench file, the decode model,
workers, CPT's own split, and a separate self-edit writer. Small spec files, no model loads: seconds."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from seal_repro.cli import main
from seal_repro.commands.plan import plan_spec
from seal_repro.plan import GPU_PRESETS, Hardware, Part, gpu_times, rates_from_bench
from seal_repro.spec import load_spec

RL = REPO / "specs/knowledge/paper-qwen2.5-7b-rl.yaml"
H100, H200, CPU = GPU_PRESETS["h100"], GPU_PRESETS["h200"], GPU_PRESETS["cpu-2core"]


def _spec(tmp_path, extra: str = "", base=RL, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(f"include: {base}\n{extra}")
    return load_spec(path)


def _by_part(plan, hw, workers=1) -> dict:
    return {(t.stage, t.what): t for t in gpu_times(plan.parts, hw, workers)}


def test_presets_give_fewer_hours_than_cpu(tmp_path):
    plan = plan_spec(_spec(tmp_path))
    hours = {name: sum(t.gpu_seconds for t in gpu_times(plan.parts, hw, 1)) / 3600 for name, hw in GPU_PRESETS.items()}
    assert hours["h200"] < hours["h100"] < hours["cpu-2core"] / 100
    # cpu-2core is today's default: every FLOP at 125e9 FLOP/s, the plan's old "time at" figure
    assert hours["cpu-2core"] == pytest.approx(plan.flops / 125e9 / 3600)


def test_workers_divide_round_hours_but_not_sampling(tmp_path):
    plan = plan_spec(_spec(tmp_path))
    one, eight = _by_part(plan, H200, 1), _by_part(plan, H200, 8)
    rounds, sampling, sft = ("baselines", "rounds: base_synthetic"), ("baselines", "self-edit sampling"), \
        ("rl", "policy SFT")
    assert one[rounds].wall_seconds == pytest.approx(8 * eight[rounds].wall_seconds)  # 200 rounds: 25 per worker
    assert one[rounds].gpu_seconds == eight[rounds].gpu_seconds  # the same work, only spread
    for part in (sampling, sft, ("rl", "ReST-EM self-edit sampling")):
        assert one[part].wall_seconds == eight[part].wall_seconds == eight[part].gpu_seconds > 0
    assert plan.workers == 8  # the paper spec names its executor: one Ray worker per GPU of an 8-GPU node


def test_spec_executor_workers_are_the_default(tmp_path, capsys):
    spec = _spec(tmp_path, "executor: {kind: ray, workers: 4}\n")
    assert plan_spec(spec).workers == 4
    assert main(["plan", str(tmp_path / "spec.yaml"), "--gpu", "h200"]) == 0
    assert "workers: 4" in capsys.readouterr().out


def test_decode_model_scales_with_bandwidth():
    part = Part("rl", "sampling", "model", 7_000_000_000, new_tokens=16 * 1000, decode_steps=1000, batch=16)
    slow, fast = (Hardware("x", "", 4e14, 1e15, bw) for bw in (2e12, 4e12))
    # memory-bound: a step reads every weight (7e9 x 2 bytes) once
    assert slow.step_seconds(part) == pytest.approx(14e9 / 2e12) and fast.step_seconds(part) == pytest.approx(7e-3 / 2)
    assert slow.seconds(part) == pytest.approx(2 * fast.seconds(part))
    # a wide enough batch turns compute-bound: 2 x N x B / peak
    wide = Part("rl", "sampling", "model", 7_000_000_000, batch=4096, decode_steps=1)
    assert fast.step_seconds(wide) == pytest.approx(2 * 7e9 * 4096 / 1e15)
    assert H200.step_seconds(part) < H100.step_seconds(part)
    assert CPU.step_seconds(part) is None  # no decode model: generation as FLOPs


def test_rates_file_overrides_the_preset(tmp_path, capsys):
    plan = plan_spec(_spec(tmp_path))
    rates = tmp_path / "bench.json"
    rates.write_text(json.dumps({"config": "qwen2.5-7b", "gpu": "NVIDIA_H200", "n_params": 7_615_616_512,
                                 "peak_flops_per_s": 989e12, "engine_train_mfu": 0.2,
                                 "hf_generate_tokens_per_s_b16": 800.0, "hf_generate_tokens_per_s_b128": 3200.0,
                                 "cpt_step_seconds_plain": "out of memory", "vllm": "not installed"}))
    hw = rates_from_bench(rates, H200)
    assert hw.train_flops_per_s == pytest.approx(0.2 * 989e12) and hw.hbm_bytes_per_s == H200.hbm_bytes_per_s
    measured, preset = _by_part(plan, hw), _by_part(plan, H200)
    rounds = ("baselines", "rounds: base_synthetic")
    assert measured[rounds].gpu_seconds > 1.9 * preset[rounds].gpu_seconds  # MFU 0.2 measured vs 0.4 assumed
    # decoding from the measured tokens/s: 16 sequences at 800 tokens/s -> 20 ms a step (the model's own size)
    sampling = next(p for p in plan.parts if p.what == "self-edit sampling")
    assert hw.step_seconds(sampling) == pytest.approx(16 / 800)
    assert main(["plan", str(tmp_path / "spec.yaml"), "--rates", str(rates)]) == 0
    out = capsys.readouterr().out
    assert "measured by `seal-repro bench gpu`" in out and "GPU-h" in out and "time at" not in out


@pytest.mark.parametrize("args", [["--gpu", "a100-80gb"], ["--rates", "no-such-file.json"], ["--workers", "0"]])
def test_bad_preset_or_rates_file_is_one_line_exit_2(args, capsys):
    assert main(["plan", str(RL), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1


def test_rates_file_without_a_training_rate_needs_a_preset(tmp_path, capsys):
    rates = tmp_path / "bench.json"
    rates.write_text(json.dumps({"hf_generate_tokens_per_s_b16": 800.0, "n_params": 10}))
    assert main(["plan", str(RL), "--rates", str(rates)]) == 2
    assert "--gpu" in capsys.readouterr().err
    assert main(["plan", str(RL), "--rates", str(rates), "--gpu", "h100"]) == 0


def test_writer_counts_sampling_and_sft_but_not_rounds(tmp_path, capsys):
    own = plan_spec(_spec(tmp_path))
    writer = ("self_edit:\n  writer: {source: hf, id: Qwen/Qwen2.5-0.5B, dtype: bfloat16, device: cuda, "
              "chat_template: false, num_params: 494032768}\n")
    taught = plan_spec(_spec(tmp_path, writer, name="writer.yaml"))
    a, b = _by_part(own, H200), _by_part(taught, H200)
    for part in (("baselines", "self-edit sampling"), ("rl", "ReST-EM self-edit sampling"), ("rl", "policy SFT"),
                 ("rl", "SEAL self-edit sampling")):
        assert b[part].flops == pytest.approx(a[part].flops * 494032768 / 7_615_616_512)
        assert b[part].gpu_seconds < a[part].gpu_seconds / 5 and b[part].model == "writer"
    for part in (("baselines", "rounds: base_synthetic"), ("rl", "ReST-EM rounds (+ baseline)"), ("rl", "SEAL rounds")):
        assert b[part].flops == a[part].flops and b[part].gpu_seconds == a[part].gpu_seconds
        assert b[part].model == "student"
    assert taught.params == own.params  # `model:` stays the student
    assert main(["plan", str(tmp_path / "writer.yaml"), "--gpu", "h100", "--workers", "8"]) == 0
    out = capsys.readouterr().out
    assert "student: Qwen/Qwen2.5-7B" in out and "writer: Qwen/Qwen2.5-0.5B (494.0M parameters" in out


def test_cpt_counts_its_own_split_and_padding():
    spec = load_spec(REPO / "specs/knowledge/paper-qwen2.5-7b-cpt.yaml")
    plan = plan_spec(spec)
    rows = {what: amount for what, amount, _ in plan.rows}
    # split: segments -> one sequence a self-edit + the passage, each padded to 2048; 5 self-edits a passage for
    # base_synthetic and seal and teacher_synthetic, 2 sequences for the passage condition; 3 epochs, 200 passages
    per_edit = 2 * 2048
    assert rows["CPT: training tokens (lora)"] == 200 * 3 * (3 * 5 * per_edit + 2 * 2048)
    by_part = _by_part(plan, H200, 8)
    assert by_part[("cpt", "seal (lora)")].wall_seconds is None  # the conditions are jobs of one executor call
    cpt_wall = by_part[("cpt", "base (lora)")].wall_seconds
    assert cpt_wall == pytest.approx(max(t.gpu_seconds for (s, _), t in by_part.items() if s == "cpt"))


def test_plan_prints_per_stage_hours_for_each_paper_spec(capsys):
    for name in ("knowledge/paper-qwen2.5-7b.yaml", "knowledge/paper-qwen2.5-7b-rl.yaml",
                 "knowledge/paper-qwen2.5-7b-cpt.yaml", "knowledge/paper-qwen2.5-7b-continual.yaml",
                 "fewshot/paper-llama-3.2-1b.yaml"):
        assert main(["plan", str(REPO / "specs" / name), "--gpu", "h200", "--workers", "8"]) == 0
        out = capsys.readouterr().out
        assert "GPU plan (h200; estimates)" in out and "= total" in out and "wall-h" in out
        assert "baselines  = stage" in out
        if "rl" in name or "cpt" in name or "continual" in name or "fewshot" in name:
            assert "rl         = stage" in out


def test_without_gpu_options_the_output_is_unchanged(capsys):
    assert main(["plan", str(RL)]) == 0
    out = capsys.readouterr().out
    assert "time at 1.25e+11 FLOP/s" in out and "GPU plan" not in out
