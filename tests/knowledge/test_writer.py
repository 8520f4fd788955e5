"""Teacher–student SEAL (`self_edit.writer`): a writer of one width writes and is RL-trained, a student of another
width is adapted and rewarded; without a writer nothing changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import build_tiny_model
from seal_repro import rest_em
from seal_repro.errors import SpecError
from seal_repro.knowledge import rl as knowledge_rl
from seal_repro.knowledge import self_edits as knowledge_self_edits
from seal_repro.knowledge.writer import Writer
from seal_repro.policy import policy_fingerprint
from seal_repro.spec import load_spec, spec_hash
from test_pipeline import TINY_SPEC, _run_stage

WRITER_WIDTH, STUDENT_WIDTH = 96, 64  # the student is conftest's tiny model (width 64)

RL = """\
rl:
  train_data: {kind: fictional, offset: 3, n_passages: 2}
  iterations: 1
  k: 2
  repeats: 1
  keep: best1
  sft: {lora: {rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}, lr: 0.05, epochs: 2, grad_accum: 1}
"""


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-wide"), seed=1, hidden_size=WRITER_WIDTH)


def _spec_text(student: Path, writer: Path | None) -> str:
    text = TINY_SPEC.format(model=student) + RL
    if writer is not None:
        text = text.replace("self_edit: {n: 1,", f"self_edit: {{writer: {{source: local, path: {writer}, "
                            "chat_template: false}, n: 1,")
    return text


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _width(model) -> int:
    return model.config.hidden_size


@pytest.fixture
def calls(monkeypatch):
    """Which model each phase ran on: widths of the models that sampled, of the kits that ran rounds (with the
    fingerprint the rounds were keyed by), and of the models the policy SFT trained."""
    seen = {"sampled": [], "rounds": [], "sft": []}
    generate, run_rounds, sft_policy = (knowledge_self_edits.generate_details, knowledge_rl.run_rounds,
                                        rest_em.sft_policy)

    def spy_generate(model, *a, **kw):
        seen["sampled"].append(_width(model))
        return generate(model, *a, **kw)

    def spy_rounds(rounds, kit, spec, fingerprint, memo, desc="inner loop", **kw):
        seen["rounds"].append((desc, _width(kit.engine.base_model), fingerprint))
        return run_rounds(rounds, kit, spec, fingerprint, memo, desc, **kw)

    def spy_sft(engine, *a, **kw):
        seen["sft"].append(_width(engine.base_model))
        return sft_policy(engine, *a, **kw)

    monkeypatch.setattr(knowledge_self_edits, "generate_details", spy_generate)
    monkeypatch.setattr(knowledge_rl, "run_rounds", spy_rounds)
    monkeypatch.setattr(rest_em, "sft_policy", spy_sft)
    return seen


def test_a_writer_of_another_width_is_rl_trained_while_the_student_is_adapted_and_rewarded(
        tmp_path, tiny_model_dir, wide_model_dir, monkeypatch, calls):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    Path("tiny.yaml").write_text(_spec_text(tiny_model_dir, wide_model_dir))
    student_before = _digest(tiny_model_dir)
    o = "o"
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    assert yaml.safe_load(Path(f"{o}/spec/writer.yaml").read_text())["writer"]["path"] == str(wide_model_dir)
    _run_stage("shared.prepare_model", "--spec-dir", f"{o}/spec", "--out", f"{o}/model")
    _run_stage("knowledge.prepare_data", "--spec-dir", f"{o}/spec", "--out", f"{o}/data")
    common = ("--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data")
    _run_stage("knowledge.baselines", *common, "--out", f"{o}/baselines")
    _run_stage("knowledge.rl", *common, "--out", f"{o}/rl")
    _run_stage("knowledge.report", "--spec-dir", f"{o}/spec", "--baselines", f"{o}/baselines", "--rl", f"{o}/rl",
               "--out", f"{o}/results")

    # every self-edit (base synthetic, RL samples, SEAL evaluation) came from the writer
    assert calls["sampled"] and set(calls["sampled"]) == {WRITER_WIDTH}
    # every round adapted the student from its own weights, keyed by the student without any policy
    student_fp = policy_fingerprint(Path(f"{o}/model"), None)
    assert {d for d, _, _ in calls["rounds"]} >= {"rl iteration 1", "seal_iter1"}
    assert all(width == STUDENT_WIDTH and fp == student_fp for _, width, fp in calls["rounds"])
    # the policy SFT trained the writer, and its adapter moved: LoRA B starts at zero
    assert calls["sft"] == [WRITER_WIDTH]
    adapter = load_file(f"{o}/rl/iter1/policy/adapter_model.safetensors")
    a_shapes = {t.shape[1] for k, t in adapter.items() if k.endswith("lora_A.weight")}
    assert a_shapes == {WRITER_WIDTH}
    assert any(t.abs().max() > 0 for k, t in adapter.items() if k.endswith("lora_B.weight"))
    # the student's weights never changed (on disk), and the prepared student is the student, not the writer
    assert _digest(tiny_model_dir) == student_before
    assert json.loads(Path(f"{o}/model/writer/source.json").read_text())["name_or_path"] == str(wide_model_dir)
    # rewards are the student's: each sample's reward is its mean graded accuracy in the student's rounds
    records = [json.loads(line) for line in Path(f"{o}/rl/iter1/records.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in Path(f"{o}/rl/iter1/samples.jsonl").read_text().splitlines()]
    for s in samples:
        marks = [r["correct"] for r in records if r["condition"] == knowledge_rl.SAMPLE_CONDITION
                 and r["passage_id"] == s["passage_id"] and r["self_edit_index"] == s["index"]]
        assert s["accuracy"] == pytest.approx(sum(marks) / len(marks))
    # the report names both models
    table = Path(f"{o}/results/table.md").read_text()
    assert f"self-edit writer: {wide_model_dir}" in table and f"student {tiny_model_dir} adapted" in table
    prov = json.loads(Path(f"{o}/results/provenance.json").read_text())
    assert prov["models"] == {"student": str(tiny_model_dir), "writer": str(wide_model_dir), "separate_writer": True}


def test_without_a_writer_the_adapted_model_writes_and_the_spec_hash_is_unchanged(tmp_path, tiny_model_dir,
                                                                                 wide_model_dir):
    plain, with_null = tmp_path / "plain.yaml", tmp_path / "null.yaml"
    plain.write_text(_spec_text(tiny_model_dir, None))
    with_null.write_text(_spec_text(tiny_model_dir, None).replace("self_edit: {n: 1,", "self_edit: {writer: null, n: 1,"))
    a, b = load_spec(plain), load_spec(with_null)
    assert a.self_edit.writer is None and spec_hash(a) == spec_hash(b)
    w = Writer.of(a, tiny_model_dir)
    assert w.spec is a and w.model_dir == tiny_model_dir and not w.separate
    assert w.student_policy(tmp_path / "policy") == tmp_path / "policy"  # the policy adapts itself
    # a writer is part of the spec's identity, and its own policy is not merged into the student
    writer_file = tmp_path / "writer.yaml"
    writer_file.write_text(_spec_text(tiny_model_dir, wide_model_dir))
    c = load_spec(writer_file)
    assert spec_hash(c) != spec_hash(a)
    wc = Writer.of(c, tmp_path / "model")
    assert wc.separate and wc.spec.model == c.self_edit.writer and wc.model_dir == tmp_path / "model" / "writer"
    assert wc.student_policy(tmp_path / "policy") is None and wc.spec.inner_loop == c.inner_loop


@pytest.mark.parametrize("section, key", [("continual: {n_passages: 2}", "continual"),
                                          ("cpt: {method: lora, seal_model: policy}", "cpt.seal_model")])
def test_a_writer_refuses_sections_that_need_the_adapted_model_to_write(tmp_path, tiny_model_dir, wide_model_dir,
                                                                       section, key):
    f = tmp_path / "s.yaml"
    f.write_text(_spec_text(tiny_model_dir, wide_model_dir) + section + "\n")
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        load_spec(f)
    f.write_text(_spec_text(tiny_model_dir, None) + section + "\n")
    load_spec(f)  # the same section without a writer is fine


def test_a_missing_writer_folder_is_a_one_line_error(tmp_path, tiny_model_dir):
    f = tmp_path / "s.yaml"
    f.write_text(_spec_text(tiny_model_dir, tmp_path / "nowhere"))
    with pytest.raises(SpecError) as err:
        load_spec(f, check_paths=True)
    assert "self_edit.writer.path" in str(err.value) and "does not exist" in str(err.value)
