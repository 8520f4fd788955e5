"""CPT corpora and full fine-tuning; continual self-edits: the retention matrix and forgetting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seal_repro.data.records import Passage, Question
from seal_repro.engine import train_config
from seal_repro.knowledge import continual as C
from seal_repro.knowledge.cpt import FullEngine, corpus, examples
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.training import TrainingSpec

P = [Passage(f"p{i}", f"T{i}", f"passage {i} text.", (Question(f"p{i}-q0", "q?", "a"),), (f"teacher {i}.",))
     for i in range(3)]


def _spec(**cpt) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "model": {"chat_template": False}, "inner_loop": {"split": "lines"},
        "rl": {"train_data": {"kind": "fictional", "offset": 8, "n_passages": 2}}, "cpt": cpt,
    })


def test_cpt_corpus_per_condition():
    base = {"p0": ["a.\nb.", "c."], "p1": ["d."], "p2": ["e."]}
    seal = {p.id: [f"seal {p.id}."] for p in P}
    spec = _spec()
    assert corpus("base", P, base, seal, spec) == []
    assert corpus("passage", P, base, seal, spec) == [p.context for p in P]
    # every self-edit of every passage, split into lines, each followed by its passage (as the inner loop)
    assert corpus("base_synthetic", P, base, seal, spec)[:6] == ["a.", "b.", "passage 0 text.", "c.",
                                                                "passage 0 text.", "d."]
    assert len(corpus("base_synthetic", P, base, seal, _spec(self_edits_per_passage=1))) == 7
    assert corpus("base_synthetic", P, base, seal, _spec(split="none"))[0] == "a.\nb."
    assert corpus("teacher_synthetic", P, base, seal, spec)[:2] == ["teacher 0.", "passage 0 text."]
    assert corpus("seal", P, base, seal, spec)[:2] == ["seal p0.", "passage 0 text."]
    with pytest.raises(ValueError, match="no self-edits"):
        corpus("seal", P, base, {}, spec)


def test_cpt_method_tags_the_paper_protocol():
    assert _spec(method="full").cpt.protocol_version == "paper v2 (full fine-tuning)"
    with pytest.raises(ValueError, match="only read when cpt.method is 'lora'"):
        _spec(method="full", lora={"rank": 4})


def test_cpt_trains_with_its_own_training_settings():
    """The cpt section is a TrainingSpec: CPT's config comes from it (its own defaults), not from the inner loop's."""
    spec = _spec(lr=0.05, grad_accum=3, lr_schedule="cosine")
    cfg = train_config(spec.cpt)
    assert (cfg.lr, cfg.grad_accum, cfg.lr_schedule, cfg.mask_prompt) == (0.05, 3, "cosine", False)
    defaults = train_config(_spec().cpt)
    assert (defaults.epochs, defaults.batch_size, defaults.grad_accum) == (3, 4, 2)
    assert defaults.epochs != train_config(spec.inner_loop).epochs  # not the inner loop's


def test_full_fine_tuning_trains_every_weight(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine = FullEngine(model, tok)
    engine.reset(0)
    stats = engine.train(examples(["the town was founded in 1874 .", "the river is short ."]),
                         train_config(TrainingSpec(epochs=2, lr=1e-2, batch_size=2)), seed=0)
    assert stats.steps == 2
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # embeddings, norms, attention, MLP: no adapter, no frozen weight


def _norm_weights(model) -> torch.Tensor:
    """Every RMSNorm weight (all exactly 1.0 in a fresh model): where bfloat16's resolution is coarsest (2^-8 below
    1), so an AdamW step of lr < 2^-9 rounds back to 1.0 on a bfloat16 weight."""
    return torch.cat([p.detach().float().flatten() for n, p in model.named_parameters() if "norm" in n])


def test_full_fine_tuning_keeps_float32_master_weights_so_small_steps_add_up(tiny_model_dir):
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = train_config(TrainingSpec(epochs=10, lr=1.5e-3, batch_size=2, lr_schedule="constant"))  # 10 steps of < 2^-9
    seqs = examples(["the town was founded in 1874 .", "the river is short ."])
    moved = {}
    for master in (True, False):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
        assert bool((_norm_weights(model) == 1.0).all())
        engine = FullEngine(model, tok, master_weights=master)
        dtypes = set()
        handle = register_optimizer_step_pre_hook(
            lambda opt, a, k: dtypes.update(p.dtype for g in opt.param_groups for p in g["params"]))
        try:
            engine.reset(0)
            stats = engine.train(seqs, cfg, seed=0)
        finally:
            handle.remove()
        assert stats.steps == 10 and all(math.isfinite(x) for x in stats.losses)
        assert dtypes == ({torch.float32} if master else {torch.bfloat16})  # what AdamW updates
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the model answers in its own dtype
        moved[master] = int((_norm_weights(model) != 1.0).sum())
    assert moved[False] == 0  # bfloat16 weights alone: every step rounded away
    assert moved[True] > 0  # float32 masters: the steps add up, and survive the cast back


def test_distributed_runs_only_for_full_fine_tuning():
    spec = _spec(method="full", distributed={"backend": "fsdp", "processes": 2})
    assert spec.cpt.distributed.processes == 2 and _spec().cpt.distributed is None  # off by default
    with pytest.raises(ValueError, match="only read when cpt.method is 'full'"):
        _spec(distributed={"processes": 2})
    with pytest.raises(ValueError):
        _spec(method="full", distributed={"processes": 1})  # one process: train in the stage's process instead


def test_the_launch_is_accelerate_launch_of_this_module(tmp_path):
    from seal_repro.knowledge.cpt import WORKER, launch_command
    from seal_repro.spec.cpt import DistributedSpec

    cmd = launch_command(DistributedSpec(processes=4), tmp_path, port=29999)
    assert cmd[1:5] == ["-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[-3:] == ["-m", WORKER, str(tmp_path)]
    assert WORKER == "seal_repro.knowledge.cpt"


@pytest.mark.parametrize("backend", ["fsdp", pytest.param("ddp", marks=pytest.mark.slow)])
def test_two_processes_train_the_model_one_process_trains(tiny_model_dir, tmp_path, backend):
    """accelerate launch, 2 CPU processes (gloo), FSDP2-sharded weights, gradients and AdamW states: the model they
    save, loaded and scored by the stage's process, equals FullEngine.train's in one process (float rounding)."""
    from seal_repro import models
    from seal_repro.knowledge.cpt import _train_and_score_launched

    spec = ExperimentSpec.model_validate({
        "model": {"source": "local", "path": str(tiny_model_dir), "chat_template": False},
        "cpt": {"method": "full", "conditions": ["passage"], "epochs": 2, "batch_size": 3, "lr": 1e-3,
                "max_grad_norm": 1.0, "distributed": {"backend": backend, "processes": 2}}})
    seqs = ["the town was founded in 1874 by a river", "the bridge was built in 1901", "paris is the capital of france",
            "the war ended in the year 1918", "a short river on the town"]  # 5: the last batch of 2 leaves a process idle
    scored = {}

    def scorer(model, tok, questions, spec_):
        scored["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return type("Scorer", (), {"score": lambda self, ids: [{"question_id": i, "prediction": "x"} for i in ids]})()

    result = _train_and_score_launched(spec, tiny_model_dir, tmp_path, seqs, None, scorer, ["q0"], tmp_path / "out")
    assert result["answers"] == [{"question_id": "q0", "prediction": "x"}] and result["train"]["steps"] == 2  # 2 epochs x 2 batches, grad_accum 2
    assert not [p for p in (tmp_path / "out").iterdir()]  # the trained model's folder is gone once scored

    model, tok = models.load(spec.model, tiny_model_dir)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    engine = FullEngine(model, tok)
    engine.reset(spec.seed)
    alone = engine.train(examples(seqs), train_config(spec.cpt), seed=spec.seed)
    assert result["train"]["final_loss"] == pytest.approx(alone.final_loss, rel=1e-5)
    one = model.state_dict()
    moved = max(float((one[k] - base[k]).abs().max()) for k in one)
    diff = max(float((one[k] - scored["state"][k]).abs().max()) for k in one)
    assert moved > 1e-3 and diff < 1e-5, (moved, diff)


def test_retention_matrix_and_forgetting_on_a_known_matrix():
    nan = math.nan
    m = np.array([[0.0, 0.0, 0.0],
                  [1.0, nan, nan],
                  [0.5, 0.8, nan],
                  [0.25, 0.6, 1.0]])
    d = C.drops(m)
    assert d[2, 0] == 0.5 and d[3, 0] == 0.75 and d[3, 1] == pytest.approx(0.2) and np.isnan(d[1]).all()
    s = C.forgetting_summary(m)
    assert s["mean_forgetting"] == pytest.approx((0.75 + 0.2) / 2)
    assert s["forgetting_by_age"] == {"1": pytest.approx((0.5 + 0.2) / 2), "2": 0.75}
    assert s["forgetting_by_step"]["2"] == 0.5 and s["mean_just_learned"] == pytest.approx(2.8 / 3)
    mean, std = C.mean_matrix([m, m])
    assert np.isnan(mean[1, 2]) and std[3, 2] == 0.0 and C.to_json(mean)[1] == [1.0, None, None]
    assert np.array_equal(np.isnan(C.from_json(C.to_json(m))), np.isnan(m))


def test_orders_are_seeded_draws_without_replacement():
    a = C.draw_orders(P, 2, 3, seed=1)
    assert a == C.draw_orders(P, 2, 3, seed=1) and len(a) == 3
    assert all(len({p.id for p in order}) == 2 for order in a)


def test_sequence_edits_in_place_and_fills_the_lower_triangle(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = ExperimentSpec.model_validate({
        "model": {"chat_template": False},
        "inner_loop": {"lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}, "epochs": 2, "lr": 0.05},
    })
    w0 = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    seen, models = [], []

    def accuracy(passages):
        seen.append([p.id for p in passages])
        return {p.id: 0.5 for p in passages}

    def edit(current, passage, step):
        models.append(current)
        return f"the {passage.title} river was built in 1874 ."

    out = C.run_sequence(model, tok, P, spec, edit, accuracy, seed=0)
    assert out["matrix"].shape == (4, 3) and out["order"] == ["p0", "p1", "p2"]
    assert np.isnan(out["matrix"][1, 1:]).all() and not np.isnan(out["matrix"][3]).any()
    assert seen == [["p0", "p1", "p2"], ["p0"], ["p0", "p1"], ["p0", "p1", "p2"]]
    assert all(m is model for m in models)  # each self-edit is written by the current (edited) model
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, torch.nn.Linear) and not torch.equal(q.weight, w0)  # edits merged, no adapter left
