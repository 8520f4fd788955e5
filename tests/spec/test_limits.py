"""The loader's limits and the spec's bounds: every pathological document is one line per problem (issue 20's
classes: deep nesting, alias bombs, enormous integers, non-string keys, tags, control characters, lone surrogates,
huge files, include lattices), every number is bounded by what the stages can use, and `validate` checks what a
run will need from the file system."""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

import pytest

from seal_repro.errors import SpecError
from seal_repro.spec import SPEC_MODELS, load_spec
from seal_repro.spec.loader import MAX_DEPTH, MAX_ERROR_LINES, MAX_INCLUDES, _models_in

MIN = "domain: knowledge\nmodel: {chat_template: false}\n"


def errors_of(path, **kw) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, **kw)
    assert all("\n" not in line for line in info.value.lines)
    return info.value.lines


@pytest.mark.parametrize("text, expected", [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", f"line 1: nested more than {MAX_DEPTH} levels deep"),
    ("a: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", f"nested more than {MAX_DEPTH} levels deep"),
    ("".join("  " * i + f"k{i}:\n" for i in range(200)), f"nested more than {MAX_DEPTH} levels deep"),
    # shallow text, deep through aliases: each alias nests the previous anchor ten levels further
    ("a: &a [[[[[[[[[[1]]]]]]]]]]\nb: &b [[[[[[[[[[*a]]]]]]]]]]\nc: &c [[[[[[[[[[*b]]]]]]]]]]\nd: [[[[[[[[[[*c]]]]]]]]]]\n",
     "levels deep through aliases"),
    ("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "values through aliases (limit 100000)"),
    (MIN + "seed: " + "9" * 5000 + "\n", "a value does not match its YAML tag"),
    (MIN + "seed: !!int ''\n", "a value does not match its YAML tag"),
    (MIN + "seed: !!bool maybe\n", "a value does not match its YAML tag"),
    (MIN + "description: !!timestamp x\n", "a value does not match its YAML tag"),
    (MIN + "2020-01-01: 3\n", "2020-01-01: keys must be words, not date; quote the key"),
    ("domain: knowledge\nmodel: {chat_template: false, ~: 1}\n", "model.~: keys must be words, not null"),
    (MIN + 'description: "\\ud800"\n', "description: contains a lone surrogate"),
    ('domain: knowledge\nmodel: {chat_template: false, source: local, path: "m\\0"}\n',
     "model.path: contains a NUL character"),
    (MIN + "description: a\x08b\n", "line 3: character 0x0008 is not allowed in YAML"),
    (MIN + '"a\\nb": 1\n', "'a\\nb': unknown key"),
    (MIN + 'conditions: ["x\\ny"]\n', "(got 'x\\ny')"),
])
def test_pathological_documents_are_one_line_each(write, text, expected):
    [line] = errors_of(write("s.yaml", text))
    assert expected in line


def test_a_huge_file_is_refused_unread(write):
    path = write("big.yaml", MIN + "description: '" + "x" * (1 << 20) + "'\n")
    assert errors_of(path) == [f"{path}: {path.stat().st_size} bytes, more than a spec can be (1048576); "
                               "specs are a few KB"]


def test_a_fifo_or_device_is_not_read(tmp_path):
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    assert errors_of(fifo) == [f"{fifo}: not a regular file"]  # reading it would block forever


def test_thousands_of_bad_values_are_counted_not_listed(write):
    path = write("s.yaml", MIN + "conditions: [" + ", ".join(f"c{i}" for i in range(500)) + "]\n")
    lines = errors_of(path)
    assert len(lines) == MAX_ERROR_LINES + 1
    assert lines[-1] == f"{path}: … and {500 - MAX_ERROR_LINES} more problems"


def test_an_include_lattice_is_cut_off(write):
    # Each level includes the next twice: 2**20 merges of the same files without a limit.
    for level in range(20):
        write(f"l{level}.yaml", f"include: [l{level + 1}.yaml, l{level + 1}.yaml]\n")
    write("l20.yaml", "seed: 1\n")
    top = write("top.yaml", MIN + "include: l0.yaml\n")
    lines = errors_of(top)
    assert len(lines) == 1 and f"more than {MAX_INCLUDES} includes in all" in lines[0]
    assert "(included by " in lines[0] and f"from {top})" in lines[0]


def test_an_include_name_that_is_no_file_name(write):
    [line] = errors_of(write("s.yaml", MIN + "include: " + "a" * 5000 + "\n"))
    assert "include: cannot include 'aaaa" in line and "File name too long" in line


# ------------------------------------------------------------------------------------------------ bounds


def _numeric(annotation) -> bool:
    if annotation in (int, float):
        return True
    if get_origin(annotation) is Annotated:
        return _numeric(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_numeric(a) for a in get_args(annotation))
    return False


def _constraints(annotation) -> list:
    if get_origin(annotation) is Annotated:
        return list(get_args(annotation)[1:]) + _constraints(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [c for a in get_args(annotation) for c in _constraints(a)]
    return []


# Numeric fields bounded by a validator rather than by `le`/`lt` (the message says why), and where.
BOUNDED_BY_VALIDATOR = {
    ("LocalExecutor", "workers"): "LocalExecutor._workers: at most 256 forked copies",
    ("RayExecutor", "num_gpus_per_worker"): "RayExecutor._gpus: at most the 16 GPUs of one node",
}


def _numeric_fields():
    seen, out = set(), []

    def walk(model):
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            if _numeric(info.annotation):
                out.append((model, name, info))
            for sub in _models_in(info.annotation):
                walk(sub)

    for m in SPEC_MODELS.values():
        walk(m)
    return out


NUMERIC = _numeric_fields()


@pytest.mark.parametrize("model, name, info", NUMERIC, ids=[f"{m.__name__}.{n}" for m, n, _ in NUMERIC])
def test_every_number_has_an_upper_bound(model, name, info):
    """A spec cannot ask for 10**9 of anything: every number is bounded by what the stages can use."""
    if (model.__name__, name) in BOUNDED_BY_VALIDATOR:
        return
    constraints = list(info.metadata) + _constraints(info.annotation)
    upper = [c for c in constraints if getattr(c, "le", None) is not None or getattr(c, "lt", None) is not None]
    assert upper, f"{model.__name__}.{name} has no upper bound (le/lt)"


def test_infinity_and_nan_are_refused(write):
    lines = errors_of(write("s.yaml", MIN + "inner_loop: {lora: {rank: 4, alpha: .inf}, max_grad_norm: .nan}\n"))
    assert any("inner_loop.lora.alpha: Input should be a finite number" in line for line in lines)
    assert any("inner_loop.max_grad_norm: Input should be a finite number" in line for line in lines)


@pytest.mark.parametrize("text, key", [
    ("inner_loop: {lora: {rank: 1000000000, alpha: 2}}", "inner_loop.lora.rank"),
    ("seed: 4294967296", "seed"),
    ("data: {n_passages: 100000000000}", "data.n_passages"),
    ("data: {questions_per_passage: 8}", "data.questions_per_passage"),
    ("data: {offset: 9995, n_passages: 6}", "data"),
    ("self_edit: {n: 100000}", "self_edit.n"),
    ("self_edit: {sampling: {max_new_tokens: 1000000000}}", "self_edit.sampling.max_new_tokens"),
    ("evaluation: {bootstrap_resamples: 100000000}", "evaluation.bootstrap_resamples"),
    ("evaluation: {repeats: 1000}", "evaluation.repeats"),
    ("inner_loop: {epochs: 100000, batch_size: 100000}", "inner_loop.epochs"),
    ("executor: {kind: local, workers: 100000}", "executor.workers"),
    ("executor: {kind: ray, workers: 1, num_cpus_per_worker: 1.0e+300}", "executor.num_cpus_per_worker"),
    ("model: {chat_template: false, num_params: 1.0e+20}", "model.num_params"),
])
def test_values_no_stage_can_use_are_refused(write, text, key):
    path = write("s.yaml", ("domain: knowledge\n" if text.startswith("model:") else MIN) + text + "\n")
    assert any(line.startswith(f"{path}: {key}: ") for line in errors_of(path))


def test_the_fictional_limits_are_the_generators():
    from seal_repro.data.fictional import MAX_QUESTIONS
    from seal_repro.spec.data import FICTIONAL_MAX_QUESTIONS

    assert FICTIONAL_MAX_QUESTIONS == MAX_QUESTIONS


# ------------------------------------------------------------------------------------------------ inputs


def test_check_paths_reads_what_each_key_needs(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    model = tmp_path / "model"
    model.mkdir()
    top = write("s.yaml", MIN.replace("model: {chat_template: false}", "model: {chat_template: false, source: local, "
                                      "path: model}") + "data: {kind: seal_json, path: folder, teacher_path: folder}\n")
    assert sorted(errors_of(top, check_paths=True)) == sorted([
        f"{top}: model.path: no config.json in model (a model folder holds config.json and *.safetensors weights)",
        f"{top}: data.path: folder is a folder; this key names a file",
        f"{top}: data.teacher_path: folder is a folder; this key names a file",
    ])
    (model / "config.json").write_text("{}")
    assert errors_of(top, check_paths=True)[0] == f"{top}: model.path: no *.safetensors weights in model"


def test_check_paths_names_an_uninstalled_semantic_grader_model(write):
    path = write("s.yaml", MIN + "evaluation: {grader: {kind: semantic, model: no-such-minilm-package}}\n")
    load_spec(path)
    [line] = errors_of(path, check_paths=True)
    assert line.startswith(f"{path}: evaluation.grader.model: 'no-such-minilm-package' is neither an installed package")
    folder = write("f.yaml", MIN + "evaluation: {grader: {kind: semantic, model: ./minilm}}\n")
    assert errors_of(folder, check_paths=True) == [
        f"{folder}: evaluation.grader.model: path does not exist: {os.path.relpath(Path(folder).parent / 'minilm')}"]


def test_check_paths_error_in_an_included_file_names_both(write):
    write("base.yaml", "data: {kind: squad_json, path: nowhere.json}\n")
    top = write("top.yaml", MIN + "include: base.yaml\n")
    [line] = errors_of(top, check_paths=True)
    assert line.startswith(f"{Path(top).parent / 'base.yaml'} (included by {top}): data.path: path does not exist")


def test_check_paths_wants_safetensors_in_a_semantic_grader_folder(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "specs" / "minilm"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    path = write("specs/s.yaml", MIN + "evaluation: {grader: {kind: semantic, model: ./minilm}}\n")
    [line] = errors_of(path, check_paths=True)
    assert line.startswith(f"{path}: evaluation.grader.model: ") and "holds only pickle weights" in line
    (folder / "model.safetensors").write_bytes(b"")
    load_spec(path, check_paths=True)
