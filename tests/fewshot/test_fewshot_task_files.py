"""Malformed ARC task files fail with every problem named by file, record and grid, before any model loads."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
import yaml

from seal_repro.errors import DataError
from seal_repro.fewshot.tasks import read_task_file, read_tasks, task_from_dict, task_to_dict

GOOD = {"id": "0000000a", "train": [{"input": [[1, 2], [3, 4]], "output": [[4]]}], "test": [{"input": [[0]], "output": [[9]]}]}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_malformed_record_is_named_by_file_record_and_grid(tmp_path):
    f = _write(tmp_path / "eval.jsonl", [
        GOOD,
        {**GOOD, "id": "0000000b", "train": [{"input": [[1, 2], [3]], "output": [[1]]}]},  # ragged rows
        {**GOOD, "id": "0000000c", "test": [{"input": [[0, 10]], "output": [[-1]]}]},  # colours out of range
        {"id": "0000000d", "train": GOOD["train"]},  # no test pairs
        {"id": "0000000e", "train": "[[1]]", "test": []},  # wrong shapes
        {"id": "0000000f", "train": [[[1]]], "test": GOOD["test"]},  # a pair that is not an object
        {"train": GOOD["train"], "test": GOOD["test"]},  # no id
        "[1, 2, 3]",  # not an object
        "{not json",
    ])
    with pytest.raises(DataError) as err:
        read_task_file(f)
    assert err.value.lines == [
        f"{f}: record 1 (line 2): task 0000000b: train[0].input: row 1 has 1 cells, row 0 has 2",
        f"{f}: record 2 (line 3): task 0000000c: test[0].input: row 0 col 1: 10 is not a colour 0-9",
        f"{f}: record 2 (line 3): task 0000000c: test[0].output: row 0 col 0: -1 is not a colour 0-9",
        f"{f}: record 3 (line 4): task 0000000d: test: expected a non-empty list of {{input, output}} pairs (missing)",
        f"{f}: record 4 (line 5): task 0000000e: train: expected a non-empty list of {{input, output}} pairs (got str)",
        f"{f}: record 4 (line 5): task 0000000e: test: expected a non-empty list of {{input, output}} pairs (empty)",
        f"{f}: record 5 (line 6): task 0000000f: train[0]: expected an object with 'input' and 'output', got list",
        f"{f}: record 6 (line 7): no task 'id'",
        f"{f}: record 7 (line 8): expected an object with 'id', 'train' and 'test', got list",
        f"{f}: record 8 (line 9): not valid JSON: Expecting property name enclosed in double quotes",
    ]


def test_a_good_file_round_trips_and_a_missing_one_is_named(tmp_path):
    task = task_from_dict(GOOD["id"], GOOD)
    f = _write(tmp_path / "train.jsonl", [task_to_dict(task), "", task_to_dict(task)])
    assert read_task_file(f) == [task, task]
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        read_task_file(tmp_path / "nope.jsonl")
    assert read_tasks(tmp_path, "train") == [task, task]  # a tasks stage's folder, by role
    with pytest.raises(DataError, match="eval.jsonl: no such file"):
        read_tasks(tmp_path, "eval")


def test_a_task_that_is_not_an_object_is_one_clear_line():
    with pytest.raises(DataError) as err:
        task_from_dict("0000000a", [1, 2], source="x.json: record 0")
    assert err.value.lines == ["x.json: record 0: task 0000000a: expected an object with 'train' and 'test' lists, "
                               "got list"]


def test_stages_reject_a_bad_task_file_before_loading_a_model(tiny_spec, tmp_path, monkeypatch):
    from seal_repro import models
    from seal_repro.stages.fewshot import baselines, rl
    from seal_repro.stages.shared import resolve_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a model was loaded before the data was checked"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fewshot": tiny_spec.model_dump(mode="json")}))
    resolve_spec.run(Namespace(params="params.yaml", section="fewshot", out="spec"))
    (tmp_path / "tasks").mkdir()
    _write(tmp_path / "tasks/eval.jsonl", [{**GOOD, "train": [{"input": [[1, 2], [3]], "output": [[1]]}]}])
    with pytest.raises(DataError, match=r"tasks/eval.jsonl: record 0 \(line 1\): task 0000000a: train\[0\].input: row 1"):
        baselines.run(Namespace(spec_dir="spec", model="m", tasks="tasks", out="b", no_memo=False))
    _write(tmp_path / "tasks/train.jsonl", [{**GOOD, "test": [{"input": [[0, 10]], "output": [[1]]}]}])
    with pytest.raises(DataError, match=r"tasks/train.jsonl: record 0 .*test\[0\].input: row 0 col 1: 10 is not"):
        rl.run(Namespace(spec_dir="spec", model="m", tasks="tasks", out="r", no_memo=False))
    _write(tmp_path / "tasks/train.jsonl", [GOOD])  # a good training file: the bad evaluation file still stops rl
    with pytest.raises(DataError, match=r"tasks/eval.jsonl: record 0 .*row 1 has 1 cells"):
        rl.run(Namespace(spec_dir="spec", model="m", tasks="tasks", out="r", no_memo=False))
    assert not (tmp_path / "b").exists() and not (tmp_path / "r").exists()
