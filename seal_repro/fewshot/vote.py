"""Augmented inference with majority voting, and ARC scoring (a test output counts as solved when
one of `n_attempts` guesses, two in ARC, is exactly right).

For each transform the whole task (demonstrations and test input) is transformed, the model
predicts, and the prediction is mapped back through the inverse transform; the back-mapped grids
vote. Ties go to the grid first produced in transform order, and identity always comes first, so
with no agreement the plain prediction leads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from seal_repro.fewshot.augment import IDENTITY, DemoTransform, GridTransform, apply_to_pairs, family_transforms, fits_all
from seal_repro.fewshot.grids import Grid, grid_to_text, pairs_grids, text_to_grid
from seal_repro.fewshot.tasks import Task
from seal_repro.fewshot.ttt_data import format_task_prompt

PredictFn = Callable[[list[str]], list[str]]
Transform = GridTransform | DemoTransform


def _is_grid_transform(t: Transform) -> bool:
    return hasattr(t, "fits")


def vote_prompts(task: Task, test_index: int, transforms: Sequence[Transform]) -> list[tuple[Transform, str]]:
    """(transform, prompt) for every transform that keeps the task within 30x30, identity first."""
    ordered: list[Transform] = [IDENTITY] + [t for t in transforms if t != IDENTITY]
    ordered = list(dict.fromkeys(ordered))  # drop repeats, keep order
    test_input = task.test[test_index][0]
    out = []
    for t in ordered:
        if _is_grid_transform(t):
            if not fits_all(t, pairs_grids(task.train) + [test_input]):
                continue
            prompt = format_task_prompt(apply_to_pairs(t, task.train), t.apply(test_input))
        else:
            prompt = format_task_prompt(t.apply(task.train), test_input)
        out.append((t, prompt))
    return out


def vote(candidates: Sequence[Grid | None], n_attempts: int = 2) -> list[Grid]:
    """The `n_attempts` most frequent grids (None = undecodable, no vote); ties by first appearance."""
    counts = Counter(g for g in candidates if g is not None)
    first = {}
    for i, g in enumerate(candidates):
        if g is not None:
            first.setdefault(g, i)
    return sorted(counts, key=lambda g: (-counts[g], first[g]))[:n_attempts]


def predict_with_votes(
    task: Task, predict_fn: PredictFn, transforms: Sequence[Transform] = (), n_attempts: int = 2
) -> list[list[Grid]]:
    """Up to `n_attempts` voted guesses for each test input of `task` (one list per test pair).

    `predict_fn` receives every prompt of the task in one batch and returns one output text each.
    """
    if n_attempts < 1:
        raise ValueError(f"n_attempts must be >= 1, not {n_attempts}")
    jobs = [(k, t, p) for k in range(len(task.test)) for t, p in vote_prompts(task, k, transforms)]
    outputs = predict_fn([p for _, _, p in jobs])
    if len(outputs) != len(jobs):
        raise ValueError(f"predict_fn returned {len(outputs)} outputs for {len(jobs)} prompts")
    candidates: list[list[Grid | None]] = [[] for _ in task.test]
    for (k, t, _), text in zip(jobs, outputs):
        grid = text_to_grid(text)
        if grid is not None and _is_grid_transform(t):
            grid = _invert_prediction(t, grid)
        candidates[k].append(grid)
    return [vote(c, n_attempts) for c in candidates]


def _invert_prediction(t: GridTransform, grid: Grid) -> Grid | None:
    """Undo `t` on a predicted grid; None when the prediction cannot be mapped back (e.g. an empty downscale)."""
    try:
        back = t.invert(grid)
    except (ValueError, IndexError):
        return None
    return back if back and back[0] else None


def is_solved(attempts: Sequence[Grid], expected: Grid) -> bool:
    return any(a == expected for a in attempts)


def task_solved(attempts_per_test: Sequence[Sequence[Grid]], task: Task) -> bool:
    """Every test output of the task solved (the ARC task-level criterion)."""
    return len(attempts_per_test) == len(task.test) and all(
        is_solved(a, out) for a, (_, out) in zip(attempts_per_test, task.test)
    )


def vote_transforms(spec) -> list:
    """The transforms whose back-mapped predictions vote (spec `evaluation.vote_families`), identity aside."""
    return [t for fam in spec.evaluation.vote_families for t in family_transforms(fam)]


def prompt_rows(tasks: Sequence[Task], role: str, transforms) -> list[dict]:
    """One prediction prompt per (task, test input, voting transform), in the order the inner loop asks: the
    documents lm-eval's `seal_arc` task reads."""
    rows = []
    for task in tasks:
        for k, (_, expected) in enumerate(task.test):
            for t, prompt in vote_prompts(task, k, transforms):
                target = t.apply(expected) if _is_grid_transform(t) else expected
                rows.append({"id": f"{task.id}/{k}/{t.name}", "task_id": task.id, "split": role, "test_index": k,
                             "transform": t.name, "prompt": prompt, "target": grid_to_text(target)})
    return rows
