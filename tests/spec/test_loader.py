"""The YAML loader: strict parsing, includes, sections, path rebasing, error lines, hashing."""

from __future__ import annotations

import os
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from seal_repro.errors import SpecError
from seal_repro.spec import PATH_KEYS, SPEC_MODELS, dump_spec_yaml, load_spec, resolve_spec_dict, spec_hash
from seal_repro.spec.base import Strict
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.loader import StrictYamlLoader

MIN = "domain: knowledge\nmodel: {chat_template: false}\n"


def errors_of(path, section=None, **kw) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, section, **kw)
    return info.value.lines


def test_minimal_spec_loads_with_defaults(write):
    spec = load_spec(write("s.yaml", MIN))
    assert isinstance(spec, ExperimentSpec)
    assert spec.model.chat_template is False and spec.model.source == "embedded"
    assert spec == ExperimentSpec.model_validate({"domain": "knowledge", "model": {"chat_template": False}})


def test_loader_is_a_safe_loader():
    assert issubclass(StrictYamlLoader, yaml.SafeLoader)


def test_duplicate_keys_all_reported_with_lines(write):
    path = write("d.yaml", MIN + "seed: 1\nseed: 2\ninner_loop:\n  lr: 0.1\n  lr: 0.2\n")
    assert errors_of(path) == [
        f"{path}: seed: duplicate key (lines 3 and 4)",
        f"{path}: inner_loop.lr: duplicate key (lines 6 and 7)",
    ]


def test_yaml_anchors_and_merge_keys_allowed(write):
    text = (
        "domain: knowledge\nmodel: {chat_template: true}\ndescription: &d same text\nprotocol: *d\n"
        "evaluation:\n  grader:\n    <<: {kind: f1, threshold: 0.9}\n    threshold: 0.7\n"
    )
    spec = load_spec(write("m.yaml", text))
    assert spec.protocol == "same text" and spec.evaluation.grader.threshold == 0.7


def test_python_tag_is_rejected_not_run(write, tmp_path):
    path = write("p.yaml", MIN + f'description: !!python/object/apply:os.system ["touch {tmp_path}/pwned"]\n')
    [line] = errors_of(path)
    assert "!!python/object/apply:os.system is not allowed" in line
    assert not (tmp_path / "pwned").exists()


def test_missing_file(tmp_path):
    assert errors_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_syntax_error_names_line_and_column(write):
    [line] = errors_of(write("y.yaml", MIN + "seed: [1, 2\n"))
    assert re.search(r"y\.yaml: YAML syntax error at line \d+, column \d+: ", line)


# --- includes ---------------------------------------------------------------------------------


def test_include_merge_order_and_rules(write):
    write("a.yaml", "inner_loop: {lr: 0.1, epochs: 3, lora: {rank: 4, alpha: 8}}\n"
          "conditions: [base, passage]\nseed: 1\n")
    write("b.yaml", "inner_loop: {epochs: 5}\nseed: 2\n")
    top = write("top.yaml", MIN + "include: [a.yaml, b.yaml]\ninner_loop: {lora: {rank: 16}}\nconditions: [base]\n")
    data, files = resolve_spec_dict(top)
    assert data["inner_loop"] == {"lr": 0.1, "epochs": 5, "lora": {"rank": 16, "alpha": 8}}  # mappings merge
    assert data["conditions"] == ["base"]  # lists are replaced, not appended
    assert data["seed"] == 2  # later include wins over earlier
    assert "include" not in data
    assert [p.name for p in files] == ["top.yaml", "a.yaml", "b.yaml"]


def test_include_single_string(write):
    write("parts/base.yaml", MIN)
    spec = load_spec(write("top.yaml", "include: parts/base.yaml\nseed: 7\n"))
    assert spec.seed == 7 and spec.model.chat_template is False


def test_include_paths_relative_to_including_file(write):
    write("lib/inner.yaml", "seed: 9\n")
    write("lib/outer.yaml", "include: inner.yaml\n")  # next to outer.yaml, not the top file
    assert load_spec(write("top.yaml", MIN + "include: lib/outer.yaml\n")).seed == 9


def test_diamond_include_is_not_a_cycle(write):
    write("d.yaml", "seed: 4\ninner_loop: {epochs: 2}\n")
    write("b.yaml", "include: d.yaml\ninner_loop: {lr: 0.01}\n")
    write("c.yaml", "include: d.yaml\ndescription: c\n")
    top = write("a.yaml", MIN + "include: [b.yaml, c.yaml]\n")
    spec = load_spec(top)
    assert (spec.seed, spec.inner_loop.epochs, spec.inner_loop.lr, spec.description) == (4, 2, 0.01, "c")
    _, files = resolve_spec_dict(top)
    assert [p.name for p in files] == ["a.yaml", "b.yaml", "d.yaml", "c.yaml"]  # d read once


def test_include_cycle(write, tmp_path):
    a = write("a.yaml", MIN + "include: b.yaml\n")
    b = write("b.yaml", "include: a.yaml\n")
    assert errors_of(a) == [f"{b} (included by {a}): include: include cycle: {a} -> {b} -> {a}"]


def test_missing_include_names_including_file(write, tmp_path):
    write("a.yaml", "include: gone.yaml\n")
    top = write("top.yaml", MIN + "include: a.yaml\n")
    [line] = errors_of(top)
    assert line.startswith(f"{tmp_path / 'a.yaml'} (included by {top}): include: cannot include 'gone.yaml'")


def test_errors_name_the_file_that_set_the_key(write):
    base = write("base.yaml", "inner_loop: {lr: 0, epochs: 3}\nself_edit: {n: 0}\n")
    top = write("top.yaml", "include: base.yaml\ndomain: knowledge\nmodel: {dtype: float16}\nself_edit: {n: 0}\n")
    assert sorted(errors_of(top)) == sorted([
        f"{top}: model.chat_template: required key is missing",  # missing keys: the top-level file
        f"{base} (included by {top}): inner_loop.lr: Input should be greater than 0",
        f"{top}: self_edit.n: Input should be greater than 0",  # overridden in top, so top set it
    ])


def test_errors_in_included_file_are_reported(write):
    bad = write("bad.yaml", "seed: 1\nseed: 2\n")
    top = write("top.yaml", MIN + "include: bad.yaml\n")
    assert errors_of(top) == [f"{bad} (included by {top}): seed: duplicate key (lines 1 and 2)"]


# --- sections ---------------------------------------------------------------------------------


def test_section_of_params_file(write):
    params = write("params.yaml", "other: 1\nknowledge:\n  domain: knowledge\n"
                   "  model: {chat_template: true}\n  seed: 3\n")
    spec = load_spec(params, "knowledge")
    assert spec.seed == 3 and spec.model.chat_template is True


def test_section_errors_prefixed_by_section(write):
    base = write("specs/base.yaml", "evaluation: {repeats: 0}\n")
    params = write("params.yaml", "knowledge:\n  include: specs/base.yaml\n  domain: knowledge\n"
                   "  inner_loop: {lr: 0}\n")
    assert sorted(errors_of(params, "knowledge")) == sorted([
        f"{params}: knowledge.inner_loop.lr: Input should be greater than 0",
        f"{params}: knowledge.model: required key is missing",
        f"{base} (included by {params}): evaluation.repeats: Input should be greater than 0",  # a key inside base
    ])


def test_section_missing_or_not_a_mapping(write):
    params = write("params.yaml", "knowledge: 3\nfewshot: {}\n")
    assert errors_of(params, "knowledge") == [f"{params}: knowledge: should be a mapping (got integer)"]
    assert errors_of(params, "other") == [f"{params}: other: section not found (top-level keys: knowledge, fewshot)"]


# --- domains ----------------------------------------------------------------------------------


def test_domain_required_and_listed(write):
    path = write("s.yaml", "model: {chat_template: false}\n")
    assert errors_of(path) == [f"{path}: domain: Missing required key 'domain'. Available: knowledge, fewshot"]
    path = write("t.yaml", "domain: x\nmodel: {chat_template: false}\n")
    assert errors_of(path) == [f"{path}: domain: Unknown domain 'x'. Available: knowledge, fewshot"]


def test_new_domain_is_one_registry_entry(write, monkeypatch):
    class Toy(Strict):
        domain: str
        size: int

    monkeypatch.setitem(SPEC_MODELS, "toy", Toy)
    assert load_spec(write("toy.yaml", "domain: toy\nsize: 3\n")).size == 3
    path = write("t.yaml", "domain: x\n")
    assert errors_of(path) == [f"{path}: domain: Unknown domain 'x'. Available: knowledge, fewshot, toy"]


# --- paths ------------------------------------------------------------------------------------


def test_paths_rebased_onto_declaring_file(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("specs/sub/base.yaml", "data: {kind: seal_json, path: ../../data/x.json}\n")
    top = write("specs/top.yaml", MIN + "include: sub/base.yaml\ndata: {teacher_path: t.json}\n")
    spec = load_spec(top)
    assert spec.data.path == os.path.join("data", "x.json")
    assert spec.data.teacher_path == os.path.join("specs", "t.json")
    assert set(PATH_KEYS) >= {"model.path", "data.path", "data.teacher_path"}


def test_paths_relative_to_cwd_and_absolute_kept(write, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    top = write("specs/top.yaml", "domain: knowledge\nmodel: {chat_template: false, source: local, path: m}\n"
                "data: {kind: squad_json, path: /abs/squad.json}\n")
    spec = load_spec(top)
    assert spec.model.path == os.path.join("..", "specs", "m")
    assert spec.data.path == "/abs/squad.json"


def test_check_paths(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    top = write("s.yaml", MIN + "data: {kind: seal_json, path: d.json}\n")
    assert load_spec(top).data.path == "d.json"  # absent data is fine at load time
    assert errors_of(top, check_paths=True) == [f"{top}: data.path: path does not exist: d.json"]
    (tmp_path / "d.json").write_text("[]")
    assert load_spec(top, check_paths=True).data.path == "d.json"


# --- messages ---------------------------------------------------------------------------------


def test_unknown_key_lists_allowed_and_suggests(write):
    path = write("s.yaml", MIN + "inner_loop: {lrr: 0.1}\nself_edit: {temperature: 0.5}\n")
    lines = errors_of(path)
    typo = re.compile(r"inner_loop\.lrr: unknown key \(allowed: .*\blr\b.*\); did you mean 'lr'\?")
    assert any(typo.search(x) for x in lines)
    assert any("self_edit.temperature: unknown key" in x and "did you mean 'sampling.temperature'?" in x for x in lines)


def test_union_tag_is_not_part_of_key_path(write):
    path = write("s.yaml", MIN + "evaluation:\n  grader: {kind: f1, threshold: 2}\n")
    assert errors_of(path) == [f"{path}: evaluation.grader.threshold: Input should be less than or equal to 1"]


# --- hashing and dumping ----------------------------------------------------------------------


def test_spec_hash_stable_and_layout_independent(write):
    one = load_spec(write("one.yaml", MIN + "seed: 5\ninner_loop: {lr: 0.01}\n"))
    write("parts.yaml", "inner_loop: {lr: 0.01}\n")
    two = load_spec(write("two.yaml", "include: parts.yaml\nseed: 5\nmodel: {chat_template: false}\ndomain: knowledge"))
    assert re.fullmatch(r"[0-9a-f]{64}", spec_hash(one))
    assert spec_hash(one) == spec_hash(two)
    assert spec_hash(one) != spec_hash(one.model_copy(update={"seed": 6}))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    lr=st.floats(1e-6, 0.99),
    prompt=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)
def test_dump_round_trips(tmp_path_factory, seed, lr, prompt):
    spec = ExperimentSpec.model_validate({
        "model": {"chat_template": True}, "seed": seed, "inner_loop": {"lr": lr},
        "self_edit": {"prompt": "custom", "template": prompt + "\n{passage}\n"},
    })
    path = tmp_path_factory.mktemp("dump") / "s.yaml"
    path.write_text(dump_spec_yaml(spec), encoding="utf-8")
    again = load_spec(path)
    assert again == spec and spec_hash(again) == spec_hash(spec)
