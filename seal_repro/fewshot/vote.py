"""Augmented inference with majority voting, and ARC scoring (a test output counts as solved when
one of `n_attempts` guesses, two in ARC, is exactly right).

For each transform the whole task (demonstrations and test input) is transformed, the model
predicts, and the prediction is mapped back through the inverse transform; the back-mapped grids
vote. Ties go to the grid first produced in transform order, and identity always comes first, so
with no agreement the plain prediction leads.

`evaluation.voting: reference` is the reference implementation's scheme instead (`reference_queries`,
`reference_vote`): leave-one-out prompts with example orders, five geometric transforms, a hierarchical vote, pass@2.
`queries`, `predict` and `query_rows` pick the spec's scheme and prompt format (seal_repro/fewshot/formats.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seal_repro.fewshot.augment import (
    IDENTITY,
    REFERENCE_SYMMETRY,
    DemoTransform,
    GridTransform,
    Symmetry,
    apply_to_pairs,
    family_transforms,
    fits_all,
    permute_examples,
)
from seal_repro.fewshot.formats import OURS, Prompt, PromptFormat, format_of
from seal_repro.fewshot.grids import Grid, Pair, grid_to_text, pairs_grids, text_to_grid
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


# ------------------------------------------------------------------------------------------------ either scheme

@dataclass(frozen=True)
class Query:
    """One prediction prompt of a test input: `inverse` maps a predicted grid back (None: nothing to undo);
    `bucket` is the transform's vote group (the reference's inverter name, "identity" when untransformed);
    `target` the expected output as this prompt's task shows it (scored by lm-eval, never shown)."""

    name: str
    prompt: Prompt
    target: Grid
    bucket: str = "identity"
    inverse: Callable[[Grid], Grid] | None = None


def _ours_queries(task: Task, test_index: int, transforms: Sequence[Transform], fmt: PromptFormat) -> list[Query]:
    ordered: list[Transform] = list(dict.fromkeys([IDENTITY] + [t for t in transforms if t != IDENTITY]))
    test_input, expected = task.test[test_index]
    out = []
    for t in ordered:
        if _is_grid_transform(t):
            if not fits_all(t, pairs_grids(task.train) + [test_input]):
                continue
            prompt = fmt.task_prompt(apply_to_pairs(t, task.train), t.apply(test_input))
            out.append(Query(t.name, prompt, t.apply(expected), t.name, None if t == IDENTITY else t.invert))
        else:
            out.append(Query(t.name, fmt.task_prompt(t.apply(task.train), test_input), expected, t.name))
    return out


# The reference's test-time transforms, in its order, with the inverter each prediction goes through
# (inference/preprocess.py:46-58: str(inverse(aug))).
REFERENCE_VOTE_TRANSFORMS = (("Transpose()", "Transpose()"), ("Flip(0)", "Flip(0)"), ("Flip(1)", "Flip(1)"),
                             ("Rotate(90)", "Rotate(270)"), ("Rotate(180)", "Rotate(180)"))
REFERENCE_VOTE_SEED = 0  # inference/preprocess.py:17 (get_leave_n_test_task's default, not overridden)
REFERENCE_PERMUTE_N = 2  # eval-self-edits.py:97-102 (default, not passed in README.md)


def reference_query_tasks(task: Task, test_index: int, seed: int = REFERENCE_VOTE_SEED
                          ) -> list[tuple[tuple[Pair, ...], Pair, str | None]]:
    """(demonstrations, (test input, expected output), augmenter name or None) of every prompt the reference asks
    for one test input (inference/preprocess.py:16-68 with n=1, permute_n=2): each leave-one-out task (N-1
    demonstrations; the real test input), two copies with the demonstrations shuffled, deduplicated; then for each
    of Transpose, Flip(0), Flip(1), Rotate(90), Rotate(180) one of those tasks drawn at random, transformed whole,
    kept unless it duplicates one already there. Duplicates are dropped keeping the first occurrence (the
    reference: a `set`, whose order depends on PYTHONHASHSEED), so the draws are reproducible."""
    rng = np.random.RandomState(seed)
    test = task.test[test_index]
    count = len(task.train)
    base: list[tuple[tuple[Pair, ...], Pair]] = []
    for i in range(count):
        demos = tuple(task.train[j] for j in range(count) if j != i)
        base.append((demos, test))
        for _ in range(REFERENCE_PERMUTE_N):
            base.append((permute_examples(demos, rng), test))
    base = list(dict.fromkeys(base))
    augmented: list[tuple[tuple[Pair, ...], Pair, str | None]] = []
    for name, _ in REFERENCE_VOTE_TRANSFORMS:
        demos, (tin, tout) = base[int(rng.choice(len(base)))]
        sym = Symmetry(REFERENCE_SYMMETRY[name])  # type: ignore[arg-type]
        new = (apply_to_pairs(sym, demos), (sym.apply(tin), sym.apply(tout)))
        if new in base:
            continue
        augmented.append((*new, name))
    seen, out = set(), []
    for demos, pair, name in augmented + [(d, p, None) for d, p in base]:
        if (demos, pair) not in seen:
            seen.add((demos, pair))
            out.append((demos, pair, name))
    return out


def reference_queries(task: Task, test_index: int, fmt: PromptFormat) -> list[Query]:
    inverters = dict(REFERENCE_VOTE_TRANSFORMS)
    out = []
    for j, (demos, (tin, tout), name) in enumerate(reference_query_tasks(task, test_index)):
        bucket = inverters[name] if name else "identity"
        inverse = Symmetry(REFERENCE_SYMMETRY[bucket]).apply if name else None  # type: ignore[arg-type]
        out.append(Query(f"q{j}:{name or 'identity'}", fmt.task_prompt(demos, tin), tout, bucket, inverse))
    return out


def _majority_grid(outputs: Sequence[Grid], transpose: bool = False) -> Grid:
    """`row_base_majority_voting` (arclib/voting.py:13-34): the most common shape, then row by row the most
    common row of that width (columns, when `transpose`). Ties go to the first seen."""
    if transpose:
        outputs = [tuple(zip(*g)) for g in outputs]
    shapes = [(len(g), len(g[0])) for g in outputs]
    rows_n, cols_n = max(dict.fromkeys(shapes), key=shapes.count)
    rows = []
    for r in range(rows_n):
        candidates = [g[r] for g in outputs if len(g) > r and len(g[r]) == cols_n]
        rows.append(max(dict.fromkeys(candidates), key=candidates.count))
    grid = tuple(rows)
    return tuple(zip(*grid)) if transpose else grid


def _top3(outputs: Sequence[Grid]) -> tuple[Grid | None, Grid | None, Grid | None]:
    """`get_all_type_of_votingsv2` (arclib/voting.py:37-69): the three most common grids; a missing second or
    third place goes to the row-wise majority grid, else the column-wise one. Unique grids are taken in order of
    first appearance (the reference: a `set`), ranked with a stable sort, as numpy's sort is for these sizes."""
    if not outputs:
        return None, None, None
    unique = list(dict.fromkeys(outputs))
    counts = [outputs.count(g) for g in unique]
    most = unique[int(np.argmax(counts))]
    second = third = most
    order = np.argsort(counts, kind="stable")
    row_major, col_major = _majority_grid(outputs), _majority_grid(outputs, transpose=True)
    if len(unique) > 2:
        second, third = unique[int(order[-2])], unique[int(order[-3])]
    elif len(unique) > 1:
        second = unique[int(order[-2])]
    if second == most:
        second = row_major if row_major != most else col_major
    if third in (most, second):
        third = row_major if row_major not in (most, second) else col_major
    return most, second, third


def reference_vote(predictions: Sequence[tuple[str, Grid]], n_attempts: int = 2) -> list[Grid]:
    """`vote` (arclib/voting.py:72-126) over (bucket, back-mapped grid) pairs: the top three of every bucket
    (all, identity, Transpose(), Flip(0), Flip(1), Rotate(180), Rotate(270)) pooled, the pool's top three C1, C2,
    C3; when C2 and C3 are as frequent in the pool, C2 is whichever the identity bucket holds more of (C3 on a
    tie). Returns [C1, C2] (ARC's two attempts; `n_attempts` 1 or 3: [C1] or [C1, C2, C3])."""
    buckets: dict[str, list[Grid]] = {}
    for bucket, grid in predictions:
        buckets.setdefault(bucket, []).append(grid)
    if not buckets:
        return []
    buckets["all"] = [g for gs in list(buckets.values()) for g in gs]
    candidates = []
    for key in ("all", "identity", "Transpose()", "Flip(0)", "Flip(1)", "Rotate(180)", "Rotate(270)"):
        if key in buckets:
            candidates += [c for c in _top3(buckets[key]) if c is not None]
    c1, c2, c3 = _top3(candidates)
    if candidates.count(c2) == candidates.count(c3) and "identity" in buckets:
        if buckets["identity"].count(c2) > buckets["identity"].count(c3):
            c3 = c2
        else:
            c2 = c3
    return [c1, c2, c3][:n_attempts]


def queries(task: Task, test_index: int, spec) -> list[Query]:
    """The prediction prompts of one test input under the spec's voting scheme and prompt format."""
    fmt = format_of(spec)
    if spec.evaluation.voting == "reference":
        return reference_queries(task, test_index, fmt)
    return _ours_queries(task, test_index, vote_transforms(spec), fmt)


def predict(task: Task, predict_fn: PredictFn, spec) -> list[list[Grid]]:
    """Voted guesses for each test input of `task` under the spec's scheme; `predict_fn` gets every prompt's key
    (formats.Prompt.key) in one batch and returns one text each."""
    fmt = format_of(spec)
    jobs = [(k, q) for k in range(len(task.test)) for q in queries(task, k, spec)]
    outputs = predict_fn([q.prompt.key for _, q in jobs])
    if len(outputs) != len(jobs):
        raise ValueError(f"predict_fn returned {len(outputs)} outputs for {len(jobs)} prompts")
    found: list[list[tuple[str, Grid | None]]] = [[] for _ in task.test]
    for (k, q), text in zip(jobs, outputs):
        grid = fmt.decode(text)
        if grid is not None and q.inverse is not None:
            grid = _undo(q.inverse, grid)
        found[k].append((q.bucket, grid))
    n = spec.evaluation.n_attempts
    if spec.evaluation.voting == "reference":
        return [reference_vote([(b, g) for b, g in f if g is not None], n) for f in found]
    return [vote([g for _, g in f], n) for f in found]


def _undo(inverse: Callable[[Grid], Grid], grid: Grid) -> Grid | None:
    try:
        back = inverse(grid)
    except (ValueError, IndexError):
        return None
    return back if back and back[0] else None


def query_rows(tasks: Sequence[Task], role: str, spec) -> list[dict]:
    """The lm-eval documents (prompts.jsonl) for the spec's scheme and format, in the order the inner loop asks.
    Rows of the `ours` format are exactly `prompt_rows`' (no `system` or `format` key)."""
    fmt = format_of(spec)
    rows = []
    for task in tasks:
        for k in range(len(task.test)):
            for q in queries(task, k, spec):
                row = {"id": f"{task.id}/{k}/{q.name}", "task_id": task.id, "split": role, "test_index": k,
                       "transform": q.name, "prompt": q.prompt.user, "target": fmt.grid_text(q.target)}
                if fmt is not OURS:
                    row.update(system=q.prompt.system, format=fmt.name)
                rows.append(row)
    return rows
