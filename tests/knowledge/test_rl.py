"""ReST-EM pieces: rewards, keep rules, the SFT objective and its settings, the spec's rules, stacked policy
adapters."""

from __future__ import annotations

import math

import pytest
import torch

from seal_repro import policy as P
from seal_repro import rest_em
from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.errors import SpecError
from seal_repro.knowledge import rl as R
from seal_repro.spec.data import DataSpec
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.rl import RLSpec, overlap_problem

TRAIN = {"kind": "fictional", "offset": 8, "n_passages": 2}


def _rl(**kw) -> RLSpec:
    return RLSpec.model_validate({"train_data": TRAIN, **kw})


def _records(acc: dict[tuple[str, int], list[int]], base: dict[str, list[int]]) -> list[dict]:
    out = [{"condition": R.SAMPLE_CONDITION, "passage_id": p, "self_edit_index": i, "correct": c}
           for (p, i), marks in acc.items() for c in marks]
    return out + [{"condition": R.BASELINE_CONDITION, "passage_id": p, "self_edit_index": 0, "correct": c}
                  for p, marks in base.items() for c in marks]


def _samples(keys, tokens=None) -> list[rest_em.Sample]:
    return [rest_em.Sample(p, i, f"self-edit {p}{i}", tokens[j] if tokens else 0) for j, (p, i) in enumerate(keys)]


# passage a: baseline 1/4; samples 0, 2/4, 2/4 (a tie), 3/4. passage b: baseline 2/4; samples 1/4, 2/4.
ACC = {("a", 0): [0, 0, 0, 0], ("a", 1): [1, 1, 0, 0], ("a", 2): [1, 0, 1, 0], ("a", 3): [1, 1, 1, 0],
       ("b", 0): [1, 0, 0, 0], ("b", 1): [1, 1, 0, None]}
RECORDS = _records(ACC, {"a": [1, 0, 0, 0], "b": [1, 1, 0, 0]})
SAMPLES = _samples(ACC)


def _key(r: rest_em.Scored) -> tuple[str, int]:
    return r.sample.context_id, r.sample.index


def _kept(rl) -> list[tuple[str, int]]:
    return [_key(r) for r in rest_em.keep_rows(R.score_samples(RECORDS, SAMPLES, rl), rl.keep, rl.top_m)]


def test_rewards_are_mean_accuracy_or_gain_over_the_baseline_and_skip_ungraded():
    scored = R.score_samples(RECORDS, SAMPLES, _rl())
    assert [r.sample for r in scored] == SAMPLES  # one Scored per sample, in the samples' order
    rows = {_key(r): r for r in scored}
    assert rows[("a", 3)].accuracy == 0.75 and rows[("a", 3)].reward == 0.75 and rows[("a", 3)].baseline == 0.25
    assert rows[("b", 1)].accuracy == pytest.approx(2 / 3)  # None (ungraded) is neither right nor wrong
    gain = {_key(r): r for r in R.score_samples(RECORDS, SAMPLES, _rl(reward="gain"))}
    assert gain[("a", 3)].reward == pytest.approx(0.5) and gain[("b", 0)].reward == pytest.approx(-0.25)
    assert [k for k, r in rows.items() if r.beats_baseline] == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]


def test_keep_rules():
    assert _kept(_rl()) == [("a", 3), ("b", 1)]  # best-1 per passage
    assert _kept(_rl(keep="top_m", top_m=3)) == [("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1)]
    assert _kept(_rl(keep="top_m", top_m=2)) == [("a", 1), ("a", 3), ("b", 0), ("b", 1)]  # the tie: earlier sample
    assert _kept(_rl(keep="beats_baseline")) == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    scored = R.score_samples(RECORDS, SAMPLES, _rl(reward="gain"))  # ARC's rule: a positive reward
    assert [_key(r) for r in rest_em.keep_rows(scored, "solved")] == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    assert set(rest_em.KEEP_RULES) >= {"best1", "top_m", "beats_baseline", "solved"}


def test_an_unknown_keep_rule_names_every_rule():
    rows = R.score_samples(RECORDS, SAMPLES, _rl())
    with pytest.raises(ValueError) as err:
        rest_em.keep_rows(rows, "best2")
    message = str(err.value)
    assert "best2" in message
    for rule in rest_em.KEEP_RULES:
        assert rule in message, rule


def test_unscored_samples_are_never_kept_and_metrics_skip_them():
    recs = _records({("a", 0): [None, None], ("a", 1): [0, 0]}, {"a": [0, 0]})
    rows = R.score_samples(recs, _samples([("a", 0), ("a", 1)], tokens=[10, 20]), _rl())
    assert math.isnan(rows[0].reward) and rest_em.keep_rows(rows, "best1") == [rows[1]]
    m = rest_em.iteration_metrics(rows, rest_em.keep_rows(rows, "best1"))
    assert m["mean_reward"] == 0.0 and m["sampled"] == 2 and m["scored"] == 1 and m["kept"] == 1
    assert m["mean_self_edit_tokens"] == 15


def test_rl_spec_rules():
    with pytest.raises(ValueError, match="top_m is not set"):
        _rl(keep="top_m")
    with pytest.raises(ValueError, match="larger than rl.k"):
        _rl(keep="top_m", top_m=6, k=5)
    with pytest.raises(ValueError, match="only read when rl.keep is 'top_m'"):
        _rl(top_m=2)
    with pytest.raises(ValueError, match="iterations"):
        _rl(iterations=0)
    assert _rl(iterations=9).iterations == 9  # no cap: the rl stage runs every iteration the spec asks for


def test_training_passages_must_not_overlap_the_evaluation_passages(tmp_path):
    ev = DataSpec(kind="fictional", n_passages=8)
    assert overlap_problem(DataSpec(kind="fictional", offset=8, n_passages=4), ev) is None
    assert "offset to 8" in overlap_problem(DataSpec(kind="fictional", offset=4, n_passages=4), ev)
    assert "offset to 8" in overlap_problem(DataSpec(kind="fictional", n_passages=2), DataSpec(kind="fictional"))
    same = DataSpec(kind="seal_json", path="x.json", n_passages=5)
    assert overlap_problem(DataSpec(kind="seal_json", path="x.json", offset=3, n_passages=5), same) is not None
    assert overlap_problem(DataSpec(kind="seal_json", path="x.json", offset=5), same) is None
    assert overlap_problem(DataSpec(kind="seal_json", path="train.json"), same) is None  # checked when loaded

    spec = tmp_path / "s.yaml"
    spec.write_text("domain: knowledge\nmodel: {chat_template: false}\ndata: {kind: fictional, n_passages: 8}\n"
                    "rl: {train_data: {kind: fictional, offset: 6, n_passages: 3}}\n"
                    "self_edit: {sampling: {temperature: 0}}\n")
    from seal_repro.spec import load_spec

    with pytest.raises(SpecError) as err:
        load_spec(spec)
    text = "\n".join(err.value.lines)
    assert "rl.train_data: passages 6–8 overlap the evaluation passages 0–7" in text and "greedy" in text


def test_sections_that_need_rl_say_so():
    with pytest.raises(ValueError, match="no rl section"):
        ExperimentSpec.model_validate({"model": {"chat_template": False}, "cpt": {}})
    with pytest.raises(ValueError, match="no rl section"):
        ExperimentSpec.model_validate({"model": {"chat_template": False}, "continual": {"start": "seal"}})
    ok = ExperimentSpec.model_validate({"model": {"chat_template": False}, "cpt": {"conditions": ["base", "passage"]}})
    assert ok.cpt.protocol_version == "paper v1 (LoRA)"


def test_sft_puts_loss_on_the_self_edit_only(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = train_config(_rl().sft, mask_prompt=True)
    assert cfg.mask_prompt and cfg.grad_accum == 5 and cfg.lr == 3e-4 and cfg.epochs == 2  # paper defaults
    ex = TrainExample(completion="the bridge was built in 1874", prompt="passage : the bridge . answer :")
    engine = LoraEngine.__new__(LoraEngine)  # _encode needs only the tokenizer
    engine.tokenizer = tok
    ids, labels = engine._encode(ex, cfg)
    n_prompt = len(tok(ex.prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and labels[-1] == tok.eos_token_id


def _tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _random_lora(model, tok, lora: LoraSpec, seed: int, path):
    engine = LoraEngine(model, tok, lora)
    engine.reset(seed)
    with torch.no_grad():
        for name, p in engine.peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    engine.save_adapter(path)
    return engine


def test_stacked_policy_equals_sequential_merges_and_loads_with_plain_peft(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 9, 30, 41, 12, 7]])
    model, tok = _tiny(tiny_model_dir)
    # iteration 1 on the base; iteration 2 on base + iteration 1 merged, with other modules and rank
    e1 = _random_lora(model, tok, LoraSpec(rank=2, alpha=4, target_modules=("q_proj", "v_proj")), 1, tmp_path / "a1")
    merged = e1.peft_model.merge_and_unload()
    e2 = _random_lora(merged, tok, LoraSpec(rank=3, alpha=12, target_modules=("v_proj", "up_proj")), 2, tmp_path / "a2")
    with torch.no_grad():
        expected = e2.peft_model(ids).logits
    P.stack_adapters(tmp_path / "a1", tmp_path / "a2", tmp_path / "policy")

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    policy = PeftModel.from_pretrained(base, str(tmp_path / "policy"))
    assert policy.peft_config["default"].r == 5
    with torch.no_grad():
        got = policy(ids).logits
        with policy.disable_adapter():
            plain = policy(ids).logits
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    out = policy.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, 9)


def test_first_policy_is_copied_and_fingerprints_tell_policies_apart(tiny_model_dir, tmp_path):
    model, tok = _tiny(tiny_model_dir)
    _random_lora(model, tok, LoraSpec(rank=2, alpha=4, target_modules=("q_proj",)), 1, tmp_path / "a1")
    P.stack_adapters(None, tmp_path / "a1", tmp_path / "p1")
    assert (tmp_path / "p1" / P.ADAPTER_CONFIG).read_bytes() == (tmp_path / "a1" / P.ADAPTER_CONFIG).read_bytes()
    base_fp = P.policy_fingerprint(tiny_model_dir, None)
    assert P.policy_fingerprint(tiny_model_dir, tmp_path / "p1") not in (base_fp, "")
    assert P.policy_fingerprint(tiny_model_dir, tmp_path / "p1") == P.policy_fingerprint(tiny_model_dir, tmp_path / "a1")


def _sft_spec(tiny_model_dir, grad_accum: int) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "seed": 1, "model": {"source": "local", "path": str(tiny_model_dir), "chat_template": False},
        "rl": {"train_data": TRAIN, "sft": {"lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]},
                                            "lr": 0.01, "epochs": 1, "batch_size": 1, "grad_accum": grad_accum,
                                            "lr_schedule": "cosine", "warmup_steps": 1}},
    })


def test_policy_sft_honours_grad_accum_and_lr_schedule(tiny_model_dir, tmp_path, monkeypatch):
    """The knowledge policy's SFT trains with `engine.train_config(spec.rl.sft, mask_prompt=True)`: every setting of
    rl.sft reaches the trainer (4 examples, grad_accum 2: half the optimizer steps of grad_accum 1)."""
    from seal_repro.io import write_jsonl
    from seal_repro.lmeval.knowledge import LmEvalQA
    from seal_repro.memo import Memo
    from seal_repro.policy import load_policy

    data = tmp_path / "data"
    for name in ("passages.jsonl", "rl_passages.jsonl"):
        write_jsonl(data / name, [])
    seen = []
    real_train = LoraEngine.train

    def spy(self, examples, cfg, seed):
        seen.append(cfg)
        return real_train(self, examples, cfg, seed)

    monkeypatch.setattr(LoraEngine, "train", spy)
    examples = [TrainExample(completion=f"the bridge was built in 18{i}4 .", prompt=f"passage {i} :") for i in range(4)]
    steps = {}
    for accum in (1, 2):
        spec = _sft_spec(tiny_model_dir, accum)
        rl = R.KnowledgeRL(spec, tiny_model_dir, data, tmp_path / f"rl{accum}", LmEvalQA(), Memo(tmp_path / "memo"))
        model, tok = load_policy(spec, tiny_model_dir, None)
        stats = rl.train_policy(1, None, model, tok, examples)
        assert seen[-1] == train_config(spec.rl.sft, mask_prompt=True)
        assert (seen[-1].grad_accum, seen[-1].lr_schedule, seen[-1].warmup_steps, seen[-1].mask_prompt) == \
            (accum, "cosine", 1, True)
        assert (tmp_path / f"rl{accum}" / "iter1" / "policy" / P.ADAPTER_CONFIG).exists()
        steps[accum] = stats["steps"]
    assert steps == {1: 4, 2: 2}
