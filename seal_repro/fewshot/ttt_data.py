"""Test-time-training data: the leave-out tasks built from one ARC task's demonstrations.

Each demonstration takes a turn as the query while the others are the in-context examples
(leave-one-out); with three or more demonstrations, one more is also dropped (leave-two-out),
which varies the context. The chosen augmentation families expand every such task (one grid
transform applied to every grid of it, or a reordering of its examples), then the examples are
deduplicated, shuffled with a seed and capped.

`format_task_prompt` is the one prompt format shared by training and inference, so the adapter
is trained on exactly the text it will be asked to complete.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from seal_repro.fewshot.augment import (
    FAMILIES,
    IDENTITY,
    DemoTransform,
    GridTransform,
    apply_to_pairs,
    family_transforms,
    fits_all,
)
from seal_repro.fewshot.grids import Grid, Pair, grid_to_text, pairs_grids

PROMPT_HEADER = "Each input grid becomes its output grid by the same rule. Grids are rows of digits 0-9.\n\n"


@dataclass(frozen=True)
class TrainingExample:
    prompt: str
    completion: str  # the query's output grid as text; the trainer appends EOS


def format_demonstrations(demos: Sequence[Pair]) -> str:
    return "".join(f"Input:\n{grid_to_text(i)}\nOutput:\n{grid_to_text(o)}\n\n" for i, o in demos)


def format_task_prompt(demos: Sequence[Pair], query_input: Grid) -> str:
    """The in-context demonstrations, then the query input; the model continues with the output grid."""
    return PROMPT_HEADER + format_demonstrations(demos) + f"Input:\n{grid_to_text(query_input)}\nOutput:\n"


def leave_out_splits(n_demos: int, leave_two_out: bool = True) -> list[tuple[tuple[int, ...], int]]:
    """(context indices, query index) for every leave-one-out task, then every leave-two-out task.

    Needs two demonstrations (one for context, one as query); leave-two-out needs three.
    """
    splits = [(tuple(j for j in range(n_demos) if j != q), q) for q in range(n_demos)] if n_demos >= 2 else []
    if leave_two_out and n_demos >= 3:
        for q in range(n_demos):
            for dropped in range(n_demos):
                if dropped != q:
                    splits.append((tuple(j for j in range(n_demos) if j not in (q, dropped)), q))
    return splits


def _transforms(families: Iterable[str]) -> tuple[list[GridTransform], list[DemoTransform | None]]:
    families = list(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown augmentation families {unknown}; known: {', '.join(FAMILIES)}")
    grid_ts: list[GridTransform] = [IDENTITY]
    demo_ts: list[DemoTransform | None] = [None]
    for fam in FAMILIES:  # fixed order, so the result does not depend on how families were listed
        if fam in families:
            (demo_ts if fam == "repeat" else grid_ts).extend(family_transforms(fam))  # type: ignore[arg-type]
    return grid_ts, demo_ts


def ttt_tasks(
    demos: Sequence[Pair],
    families: Iterable[str] = (),
    *,
    seed: int,
    max_examples: int,
    leave_two_out: bool = True,
) -> list[tuple[tuple[Pair, ...], Pair]]:
    """(in-context demonstrations, (query input, query output)) of every test-time-training example, deduplicated,
    shuffled with `seed` and capped (`build_ttt_examples` writes them as text).

    Empty when there are fewer than two demonstrations. A grid transform is skipped for a
    leave-out task when any of its grids would leave 30x30.
    """
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, not {max_examples}")
    grid_ts, demo_ts = _transforms(families)
    seen: set = set()
    tasks: list[tuple[tuple[Pair, ...], Pair]] = []
    for context_idx, q in leave_out_splits(len(demos), leave_two_out):
        task = tuple(demos[j] for j in context_idx) + (demos[q],)
        for gt in grid_ts:
            if not fits_all(gt, pairs_grids(task)):
                continue
            *context, query = apply_to_pairs(gt, task)
            for dt in demo_ts:
                ordered = dt.apply(context) if dt is not None else tuple(context)
                item = (tuple(ordered), query)
                if item not in seen:
                    seen.add(item)
                    tasks.append(item)
    random.Random(seed).shuffle(tasks)
    return tasks[:max_examples]


def build_ttt_examples(
    demos: Sequence[Pair],
    families: Iterable[str] = (),
    *,
    seed: int,
    max_examples: int,
    leave_two_out: bool = True,
) -> list[TrainingExample]:
    """Training examples for test-time training on one task's demonstrations (`ttt_tasks`, as text)."""
    return [TrainingExample(format_task_prompt(context, query_in), grid_to_text(query_out))
            for context, (query_in, query_out) in ttt_tasks(demos, families, seed=seed, max_examples=max_examples,
                                                            leave_two_out=leave_two_out)]
