"""`seal-repro bench inner-loop` on the tiny random Llama: every line printed and parseable, the reference really
pads to 2048 at batch size 1 and builds a new Trainer + PEFT wrapper per round. No timing assertions."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from seal_repro import cli
from seal_repro.bench.inner_loop import BenchSettings, format_lines, run_bench, settings_from_args
from seal_repro.bench.reference import REFERENCE_MAX_LENGTH, ReferenceInnerLoop
from seal_repro.engine import train_config
from seal_repro.spec.training import TrainingSpec
from seal_repro.spec import load_spec

TINY = """\
domain: knowledge
seed: 1
model: {{source: local, path: {model}, chat_template: false, device: cpu}}
data: {{kind: fictional, n_passages: 2, questions_per_passage: 5}}
inner_loop: {{lora: {{rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}}, epochs: 1, lr: 0.01, batch_size: 4}}
evaluation: {{max_new_tokens: 3}}
conditions: [passage]
"""

KEYS = [
    "engine_round_seconds", "reference_round_seconds", "engine_accuracy", "reference_accuracy",
    "engine_train_flops_per_s", "matmul_flops_per_s", "train_flops_fraction_of_matmul",
    "batched_generation_tokens_per_s", "sequential_generation_tokens_per_s", "batched_vs_sequential_generation",
    "peak_memory_mb", "n_rounds", "inner_loop_speedup_vs_reference", "engine_final_loss", "reference_final_loss",
    "batched_rounds_speedup_b2", "batched_rounds_speedup_b4", "batched_rounds_best_b", "batched_rounds_speedup",
]
TEXT_KEYS = {"device", "dtype", "condition", "engine_answers", "matmul_best_shape", "self_edit_lines"}


@pytest.fixture
def tiny_spec(tmp_path, tiny_model_dir):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(model=tiny_model_dir))
    return path


@pytest.fixture(scope="module")
def bench_output(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("bench") / "tiny.yaml"
    path.write_text(TINY.format(model=tiny_model_dir))
    results = run_bench(load_spec(path), tiny_model_dir, BenchSettings(condition="passage", rounds=1, epochs=1))
    return results, format_lines(results)


def test_every_line_is_printed_and_parses(bench_output):
    results, text = bench_output
    lines = text.splitlines()
    pairs = dict(line.split("=", 1) for line in lines)
    assert len(pairs) == len(lines)  # one name=value per line, no duplicates
    for key in KEYS + ["device", "dtype"]:
        assert key in pairs, key
    for key, value in pairs.items():
        if key not in TEXT_KEYS:
            float(value)
    assert lines[-1].startswith("inner_loop_speedup_vs_reference=")
    assert lines[-1].split("=")[1] == f"{results['inner_loop_speedup_vs_reference']:.2f}"
    assert pairs["device"] == "cpu" and pairs["dtype"] == "float32" and pairs["n_rounds"] == "1"
    assert 0.0 <= float(pairs["engine_accuracy"]) <= 1.0 and 0.0 <= float(pairs["reference_accuracy"]) <= 1.0
    # both trainers logged a finite loss; the best B is one of those measured, its speedup the one printed for it
    assert math.isfinite(results["engine_final_loss"]) and math.isfinite(results["reference_final_loss"])
    best = results["batched_rounds_best_b"]
    assert best in (2, 4) and results["batched_rounds_speedup"] == results[f"batched_rounds_speedup_b{best}"] > 0


def test_reference_trains_on_2048_padded_tokens(bench_output):
    results, _ = bench_output
    # One round, one sequence (the passage), one epoch, batch size 1: exactly one 2048-token batch.
    assert results["reference_train_tokens"] == REFERENCE_MAX_LENGTH
    assert 0 < results["reference_train_real_tokens"] < REFERENCE_MAX_LENGTH
    # The engine trains on the same sequence without the padding (+ the EOS it appends).
    assert results["engine_train_real_tokens"] <= results["reference_train_real_tokens"] + 1


def test_reference_builds_a_new_trainer_and_wrapper_every_round(tiny_model_dir, monkeypatch, tmp_path):
    import peft
    import transformers

    from seal_repro.models import load
    from seal_repro.spec.inner_loop import LoraSpec
    from seal_repro.spec.model import ModelSpec

    trainers, wrappers, batches = [], [], []

    class CountingTrainer(transformers.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

        def training_step(self, model, inputs, *args, **kwargs):
            batches.append(tuple(inputs["input_ids"].shape))
            return super().training_step(model, inputs, *args, **kwargs)

    real_get_peft_model = peft.get_peft_model

    def counting_get_peft_model(*args, **kwargs):
        wrappers.append(real_get_peft_model(*args, **kwargs))
        return wrappers[-1]

    monkeypatch.setattr(transformers, "Trainer", CountingTrainer)
    monkeypatch.setattr(peft, "get_peft_model", counting_get_peft_model)
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = train_config(TrainingSpec(epochs=1, lr=0.01, batch_size=4, warmup_ratio=0.3))
    ref = ReferenceInnerLoop(model, tok, LoraSpec(rank=2, alpha=4, target_modules=("q_proj", "v_proj")), cfg,
                             answer_prompt="Question: {question}\nAnswer:",
                             max_new_tokens=2, chat_template=False, work_dir=tmp_path / "t")
    seqs = ("the town was founded in 1874", "the bridge was built in 1901")
    first = ref.run_round(seqs, ["when was the town founded ?"], seed=1)
    second = ref.run_round(seqs[:1], ["when was the bridge built ?", "what is the capital ?"], seed=2)
    assert len(trainers) == 2 and trainers[0] is not trainers[1]
    assert len(wrappers) == 2 and wrappers[0] is not wrappers[1]
    assert batches == [(1, REFERENCE_MAX_LENGTH)] * 3  # batch size 1, every sequence padded to 2048
    assert (first.steps, first.trained_tokens) == (2, 2 * REFERENCE_MAX_LENGTH)
    assert (second.steps, second.trained_tokens) == (1, REFERENCE_MAX_LENGTH)
    assert len(first.predictions) == 1 and len(second.predictions) == 2
    # the engine's training settings, warm-up as a ratio included; clipping stays the Trainer's default (1.0)
    args = trainers[0].args
    assert (args.learning_rate, args.num_train_epochs, args.lr_scheduler_type) == (0.01, 1, "linear")
    assert [args.get_warmup_steps(n) for n in (2, 10)] == [cfg.warmup_for(n) for n in (2, 10)] == [1, 3]
    assert args.max_grad_norm == 1.0
    # unload() leaves the base model exactly as loaded: no LoRA layers, same weights.
    state = ref.model.state_dict()
    assert set(state) == set(base) and all(bool((state[k] == base[k]).all()) for k in base)


def test_cli_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "inner-loop", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for word in ("--quick", "--rounds", "--model-dir", "--out", "inner_loop_speedup_vs_reference", "2048"):
        assert word in out


def test_cli_bad_spec_is_one_line_exit_2(capsys, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert cli.main(["bench", "inner-loop", "--spec", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and str(missing) in captured.err


def test_cli_bad_rounds_and_model_dir_exit_2(capsys, tiny_spec, tmp_path):
    assert cli.main(["bench", "inner-loop", "--spec", str(tiny_spec), "--rounds", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["bench", "inner-loop", "--spec", str(tiny_spec), "--model-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_runs_and_writes_json(capsys, tiny_spec, tiny_model_dir, tmp_path):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "inner-loop", "--spec", str(tiny_spec), "--model-dir", str(tiny_model_dir),
                     "--rounds", "1", "--epochs", "1", "--condition", "passage", "--answers", "generate",
                     "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("inner_loop_speedup_vs_reference=")
    data = json.loads(out.read_text())
    assert data["n_rounds"] == 1 and data["engine_answers"] == "generate" and set(data) == {line.split("=", 1)[0] for line in lines}
    assert all(len(line.split("=", 1)) == 2 for line in lines)


def test_quick_is_one_seal_shaped_round_with_the_self_edit_cut_to_three_lines(tmp_path, tiny_model_dir):
    import argparse

    from seal_repro.bench.inner_loop import QUICK, _plan, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(model=tiny_model_dir))
    spec = load_spec(path)
    settings = settings_from_args(parser.parse_args(["inner-loop", "--quick"]))
    assert (settings.condition, settings.rounds, settings.epochs, settings.self_edit_lines) == (
        "teacher_synthetic", 1, 2, 3) == tuple(QUICK[k] for k in ("condition", "rounds", "epochs", "self_edit_lines"))
    (rnd,) = _plan(spec, settings)
    full = _plan(spec, dataclasses.replace(settings, self_edit_lines=None))[0]
    # the same passage, the first 3 self-edit lines, then the passage itself (append_passage)
    assert rnd.sequences == full.sequences[:3] + full.sequences[-1:] and len(full.sequences) > 4
