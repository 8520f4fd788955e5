import hashlib

import pytest
import torch

from seal_repro.engine import LoraEngine, TrainExample, generate, train_config
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

TEXTS = ["the town was founded in 1874 by a river", "the bridge was built in 1901", "paris is the capital of france"]


@pytest.fixture
def engine(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    return LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj")))


def _base_checksum(engine) -> str:
    h = hashlib.sha256()
    for name, p in sorted(engine.peft_model.named_parameters()):
        if "lora_" not in name:
            h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


def test_reset_adapter_is_identity_and_training_changes_logits(engine):
    engine.reset(1)
    assert not engine.logits_differ_from_base(TEXTS[0])
    engine.train([TrainExample(t) for t in TEXTS], train_config(TrainingSpec(epochs=2, lr=1e-2, batch_size=2)), seed=1)
    assert engine.logits_differ_from_base(TEXTS[0])
    engine.reset(1)
    assert not engine.logits_differ_from_base(TEXTS[0])


def test_base_weights_never_change_across_rounds(engine):
    before = _base_checksum(engine)
    for seed in range(3):
        engine.reset(seed)
        engine.train([TrainExample(t) for t in TEXTS], train_config(TrainingSpec(epochs=2, lr=1e-2)), seed=seed)
    assert _base_checksum(engine) == before


def test_training_lowers_loss_and_is_deterministic(engine):
    cfg = train_config(TrainingSpec(epochs=8, lr=1e-2, batch_size=3, lr_schedule="constant"))
    engine.reset(7)
    a = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=7)
    engine.reset(7)
    b = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=7)
    assert a.losses == b.losses
    assert a.losses[-1] < a.losses[0]
    assert a.steps == 8


def test_grad_accum_and_max_steps_count_optimizer_steps(engine):
    engine.reset(0)
    cfg = train_config(TrainingSpec(epochs=4, batch_size=1, grad_accum=3))
    s = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=0)
    assert s.steps == 4
    engine.reset(0)
    cfg = train_config(TrainingSpec(epochs=10, batch_size=1, max_steps=5))
    s = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=0)
    assert s.steps == 5


def _optimizer_steps(engine, cfg, seed=0):
    """Train on TEXTS with `cfg`; for every optimizer step, (the lr it uses, the trained gradients' global L2 norm)
    as the optimizer sees them: after any clipping, before the update."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []

    def hook(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append((opt.param_groups[0]["lr"], float(torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(g) for g in grads])))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        engine.reset(seed)
        stats = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=seed)
    finally:
        handle.remove()
    assert len(seen) == stats.steps
    return seen


def test_gradient_clipping_is_off_by_default():
    assert TrainingSpec().max_grad_norm is None
    assert train_config(TrainingSpec()).max_grad_norm is None
    assert train_config(TrainingSpec(max_grad_norm=0.5)).max_grad_norm == 0.5
    with pytest.raises(ValueError):
        TrainingSpec(max_grad_norm=0)  # null turns clipping off, not 0


def test_max_grad_norm_clips_the_gradient_before_each_step(engine):
    bound = 1e-6
    spec = dict(epochs=2, batch_size=1, lr=0.5, lr_schedule="constant")
    free = _optimizer_steps(engine, train_config(TrainingSpec(**spec)))
    clipped = _optimizer_steps(engine, train_config(TrainingSpec(**spec, max_grad_norm=bound)))
    assert len(free) == len(clipped) == 6
    assert all(norm > 100 * bound for _, norm in free)  # unclipped gradients are far above the bound...
    assert all(0 < norm <= bound * (1 + 1e-4) for _, norm in clipped)  # ...clipped ones are at most the bound
    # and the clipped adapter moves far less in one step at a huge lr than the free one
    moved = {}
    for name, norm in (("free", None), ("clipped", bound)):
        engine.reset(0)
        before = [p.detach().clone() for p in engine.trainable]
        engine.train([TrainExample(TEXTS[0])], train_config(TrainingSpec(epochs=1, lr=0.5, lr_schedule="constant",
                                                                          max_grad_norm=norm)), seed=0)
        moved[name] = sum(float((p.detach() - b).norm()) for p, b in zip(engine.trainable, before))
    assert moved["clipped"] < moved["free"] / 2


def test_warmup_ratio_sets_the_warmup_steps(engine):
    assert train_config(TrainingSpec(warmup_ratio=0.25)).warmup_for(10) == 3  # ceil(2.5)
    assert train_config(TrainingSpec(warmup_ratio=0.0)).warmup_for(10) == 0
    assert train_config(TrainingSpec(warmup_steps=2, warmup_ratio=0.5)).warmup_for(10) == 2  # warmup_steps wins
    # in training: 3 texts x 4 epochs = 12 steps, warmup ceil(0.3 x 12) = 4; linear warmup from 0 to the peak lr
    lr = 1e-2
    seen = _optimizer_steps(engine, train_config(TrainingSpec(epochs=4, batch_size=1, lr=lr, warmup_ratio=0.3)))
    lrs = [r for r, _ in seen]
    assert len(lrs) == 12
    assert lrs[:5] == pytest.approx([0, lr / 4, lr / 2, 3 * lr / 4, lr])
    assert max(lrs) == pytest.approx(lr) and lrs.index(max(lrs)) == 4
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # then the linear decay


def test_train_config_takes_known_overrides_and_rejects_unknown_ones():
    spec = TrainingSpec(lr=1e-3, epochs=3)
    cfg = train_config(spec, lr=5e-2, epochs=7, mask_prompt=True)
    assert (cfg.lr, cfg.epochs, cfg.mask_prompt, cfg.batch_size) == (5e-2, 7, True, spec.batch_size)
    assert (spec.lr, spec.epochs) == (1e-3, 3)  # the spec itself is untouched
    with pytest.raises(TypeError, match="unknown training settings"):
        train_config(spec, learning_rate=1e-2)
    with pytest.raises(TypeError, match="epoch"):
        train_config(spec, epoch=2)


def test_padding_to_max_len_puts_loss_on_padding(engine):
    ex = [TrainExample(TEXTS[0])]
    ids, labels = engine._encode(ex[0], train_config(TrainingSpec()))
    enc = engine._collate([(ids, labels)], train_config(TrainingSpec(pad_to_max_len=True, max_seq_len=64)))
    assert enc["labels"].shape[1] == 64 and int(enc["attention_mask"].sum()) == len(ids)
    assert int((enc["labels"] != -100).sum()) == 64  # reference behaviour: every position, padding included, has a label
    lab2 = engine._collate([(ids, labels)], train_config(TrainingSpec()))["labels"]
    assert int((lab2 != -100).sum()) == len(ids)


def test_mask_prompt_removes_prompt_labels(engine):
    ex = TrainExample(completion="1874", prompt="when was the town founded ?")
    ids, labels = engine._encode(ex, train_config(TrainingSpec(), mask_prompt=True))
    n_prompt = len(engine.tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]


def test_batched_greedy_generation_matches_one_at_a_time(engine):
    engine.reset(0)
    prompts = ["the town was", "paris is the capital of", "the bridge"]
    batched = engine.generate(prompts, max_new_tokens=6, batch_size=3)
    single = [engine.generate([p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_generate_stop_strings_cut(engine):
    out = generate(engine.base_model, engine.tokenizer, ["the town"], max_new_tokens=8, stop=("town", "the", "a"))
    assert all(s not in out[0] for s in ("town",)) or out[0] == ""


def test_batches_never_pad_more_than_their_real_tokens():
    import torch

    from seal_repro.batching import length_grouped_batches as _length_grouped_batches

    lengths = [40, 45, 44, 43, 240, 41, 46, 90]  # a self-edit's short lines and the passage appended to them
    encoded = [([0] * n, [0] * n) for n in lengths]
    batches = _length_grouped_batches(encoded, 4, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every sequence once
    for b in batches:
        width, real = max(lengths[i] for i in b), sum(lengths[i] for i in b)
        assert len(b) <= 4 and width * len(b) - real <= max(real, 64)
    assert [4] in batches  # the passage trains alone, not padded against with 3 short lines
    tiny = [([0] * n, [0] * n) for n in (2, 3, 5, 8, 13, 21, 3, 4)]  # a few tokens of padding cost less than a step
    assert sorted(map(len, _length_grouped_batches(tiny, 4, torch.Generator().manual_seed(0)))) == [4, 4]
    plain = _length_grouped_batches(encoded, 4, torch.Generator().manual_seed(0), bound_padding=False)
    assert sorted(map(len, plain)) == [4, 4]  # the reference-compatible mode keeps fixed-size batches


def test_saved_adapter_config_is_the_same_bytes_in_every_process(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    code = ("import sys, torch; from seal_repro.engine import LoraEngine; from seal_repro.models import load; "
            "from seal_repro.spec.model import ModelSpec; from seal_repro.spec.inner_loop import LoraSpec; "
            f"m, t = load(ModelSpec(source='local', path={str(tiny_model_dir)!r}, chat_template=False), "
            f"__import__('pathlib').Path({str(tiny_model_dir)!r})); "
            "e = LoraEngine(m, t, LoraSpec(rank=2, alpha=4)); e.reset(0); e.save_adapter(sys.argv[1])")
    configs = []
    for seed in ("1", "2", "3"):  # string hashing, and so set order, differs between these processes
        out = tmp_path / seed
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env={**__import__("os").environ,
                                                                            "PYTHONHASHSEED": seed})
        configs.append((out / "adapter_config.json").read_bytes())
    assert configs[0] == configs[1] == configs[2]


def _lora_linears(engine):
    from peft.tuners.lora import Linear

    return [m for m in engine.peft_model.modules() if isinstance(m, Linear)]


def test_fused_lora_forward_matches_peft_forward_and_gradients(engine):
    """The engine's LoRA forward (one addmm, seal_repro/engine.py) gives PEFT's outputs and gradients."""
    engine.reset(3)
    for layer in _lora_linears(engine):  # a non-zero B, so the adapter contributes
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    layers = _lora_linears(engine)
    assert layers and all("forward" in vars(layer) for layer in layers)  # installed on every adapted layer
    ids = torch.tensor([engine.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]])

    def loss_and_grads():
        engine.peft_model.zero_grad(set_to_none=True)
        out = engine.peft_model(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.logits.detach(), [p.grad.clone() for p in engine.trainable]

    fused_logits, fused_grads = loss_and_grads()
    saved = {layer: vars(layer).pop("forward") for layer in layers}  # back to PEFT's class forward
    try:
        peft_logits, peft_grads = loss_and_grads()
    finally:
        for layer, fwd in saved.items():
            layer.forward = fwd
    torch.testing.assert_close(fused_logits, peft_logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(fused_grads, peft_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with engine.peft_model.disable_adapter():  # the disabled adapter goes through PEFT's path: the base model
        base = engine.peft_model(input_ids=ids).logits
    assert not torch.allclose(base, fused_logits, atol=1e-4)
