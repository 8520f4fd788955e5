import dataclasses
import json
from pathlib import Path

import pytest

from seal_repro.errors import DataError, UserError
from seal_repro.fewshot.tasks import Task, load_arc_tasks, load_task_sets, paper_task_ids, select_small, task_from_dict
from seal_repro.spec.fewshot import FewShotTasksSpec

SHARED_IDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "seal-arc" / "filtered_task_ids.json"


def test_task_from_dict_collects_every_problem():
    data = {
        "train": [
            {"input": [[1, 2, 3]], "output": [[1]]},
            {"input": [[1, 2, 3], [1, 2, 3], [1, 2, 3, 4]], "output": [[0, 12]]},
        ],
        "test": [{"input": [[1]]}],
    }
    with pytest.raises(DataError) as err:
        task_from_dict("44f52bb0", data)
    assert err.value.lines == [
        "task 44f52bb0: train[1].input: row 2 has 4 cells, row 0 has 3",
        "task 44f52bb0: train[1].output: row 0 col 1: 12 is not a colour 0-9",
        "task 44f52bb0: test[0].output: missing",
    ]
    with pytest.raises(DataError, match="train: expected a non-empty list"):
        task_from_dict("x", {"train": [], "test": data["test"]})


def test_load_by_ids_in_order():
    tasks = load_arc_tasks("train", ids=["6150a2bd", "44f52bb0"])
    assert [t.id for t in tasks] == ["6150a2bd", "44f52bb0"]
    t = tasks[1]
    assert isinstance(t, Task) and len(t.train) == 6 and len(t.test) == 2
    assert t.train[0][0] == ((2, 0, 2), (0, 2, 0), (2, 0, 2)) and t.train[0][1] == ((1,),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.id = "other"  # frozen


def test_unknown_ids_suggest():
    with pytest.raises(DataError) as err:
        load_arc_tasks("train", ids=["44f52bb1", "358ba94e"])
    assert "unknown ARC task id '44f52bb1'" in err.value.lines[0] and "44f52bb0" in err.value.lines[0]
    assert err.value.lines[1] == "ARC task '358ba94e' is in split 'eval', not 'train'"


def test_small_selection():
    tasks = load_arc_tasks("eval", n=3, max_cells=25)
    assert len(tasks) == 3 and [t.id for t in tasks] == sorted(t.id for t in tasks)
    assert all(t.max_cells <= 25 for t in tasks)
    with pytest.raises(DataError, match="only 7 qualify"):
        load_arc_tasks("eval", n=8, max_cells=25)
    with pytest.raises(UserError, match="not both"):
        load_arc_tasks("eval", ids=["358ba94e"], n=1)
    with pytest.raises(UserError, match="split"):
        load_arc_tasks("test")


def test_select_small_keeps_order():
    a = Task("a", ((((1,) * 5,), ((1,),)),), ())
    b = Task("b", ((((1,),), ((1,),)),), ())
    assert select_small([a, b], max_cells=1) == [b]
    assert select_small([a, b], n=1) == [a]


def _write(tmp_path, data) -> Path:
    p = tmp_path / "ids.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_paper_task_ids_format(tmp_path):
    assert paper_task_ids(_write(tmp_path, {"source": "x", "train": ["44f52bb0"], "eval": ["358ba94e"]})) == {
        "train": ["44f52bb0"],
        "eval": ["358ba94e"],
    }


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("{not json", "not valid JSON"),
        ([], "expected an object"),
        ({"train": []}, "eval: expected a list"),
        ({"train": ["XYZ"], "eval": []}, "not 8-hex-digit"),
        ({"train": ["44f52bb0", "44f52bb0"], "eval": []}, "listed twice"),
        ({"train": ["44f52bb0"], "eval": ["44f52bb0"]}, "in both train and eval"),
    ],
)
def test_paper_task_ids_errors(tmp_path, data, fragment):
    with pytest.raises(DataError, match=fragment):
        paper_task_ids(_write(tmp_path, data))
    with pytest.raises(DataError, match="cannot read"):
        paper_task_ids(tmp_path / "missing.json")


def test_load_task_sets_from_file(tmp_path):
    _write(tmp_path, {"train": ["6150a2bd"], "eval": ["358ba94e", "59341089"]})
    spec = FewShotTasksSpec(
        train={"split": "train", "ids_file": "ids.json"}, eval={"split": "eval", "ids_file": "ids.json"}
    )
    train, evaluation = load_task_sets(spec, tmp_path)
    assert [t.id for t in train] == ["6150a2bd"] and [t.id for t in evaluation] == ["358ba94e", "59341089"]


def test_load_task_sets_overlap_found_at_load(tmp_path):
    _write(tmp_path, {"train": ["6150a2bd"], "eval": ["44f52bb0"]})
    spec = FewShotTasksSpec(train={"split": "train", "ids_file": "ids.json"}, eval={"split": "train", "ids": ["6150a2bd"]})
    with pytest.raises(DataError, match="select the same tasks: 6150a2bd"):
        load_task_sets(spec, tmp_path)


def test_paper_ids_all_load():
    if not SHARED_IDS.exists():
        pytest.skip("../shared is not present")
    ids = paper_task_ids(SHARED_IDS)
    assert (len(ids["train"]), len(ids["eval"])) == (12, 10)
    assert len(load_arc_tasks("train", ids=ids["train"])) == 12
    assert len(load_arc_tasks("eval", ids=ids["eval"])) == 10
