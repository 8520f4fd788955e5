"""Test-time-training data as the reference implementation builds it (spec `inner_loop.augmentations: reference`):
few-shot/self-edit.py:268-366 (`get_test_time_train_data`, `get_formatted_data`, `process_task`).

For each leave-out size n (1, and 2 when `inner_loop.leave_two_out`): every demonstration in turn is the held-out
example and n-1 more are dropped (so leave-two-out of a 2-demonstration task gives tasks with no demonstration at
all, as the reference's do); each chosen augmenter is applied to every such task, held-out example included, and
a result with a grid over 30x30 is dropped; the results and the un-augmented tasks are deduplicated; then every
one of them gets one copy with its colours permuted (only when some augmenter was chosen) and its examples
shuffled (`permute_n=1`), and the lot is deduplicated again. One random state (seeded) is drawn from in that
order, fresh for each n, as the reference's (self-edit.py:271). The examples of both sizes are pooled, the ones
too long for `inner_loop.max_seq_len` dropped (the reference: < 8192 tokens, self-edit.py:325-336), and only then
capped at `inner_loop.max_examples` after a seeded shuffle (self-edit.py:361-364).

Where it differs: the reference deduplicates through Python `set`s of tasks hashed by their bytes, whose order
(and so which random draw each task gets, and which 250 survive the cap) changes with PYTHONHASHSEED from one
process to the next; here the first occurrence is kept, so a seed gives one result.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from seal_repro.fewshot.augment import (
    FAMILIES,
    RandomTranslate,
    fits_all,
    permute_examples,
    reference_colour_permutation,
    reference_family,
)
from seal_repro.fewshot.formats import PromptFormat, Prompt
from seal_repro.fewshot.grids import Pair, pairs_grids

LeaveOut = tuple[tuple[Pair, ...], Pair]  # (demonstrations, held-out example)


def leave_n_tasks(demos: Sequence[Pair], n: int) -> list[LeaveOut]:
    """The reference's leave-n tasks (self-edit.py:272-284): held-out i, minus n-1 more, in index order."""
    out = []
    count = len(demos)
    for i in range(count):
        rest = set(range(count)) - {i}
        for comb in itertools.combinations(sorted(rest), n - 1):
            out.append((tuple(demos[j] for j in sorted(rest - set(comb))), demos[i]))
    return out


def _augmented(task: LeaveOut, augmenter) -> LeaveOut | None:
    demos, held = task
    pairs = demos + (held,)
    if isinstance(augmenter, RandomTranslate):
        out = tuple(augmenter.apply_pair(p) for p in pairs)
    else:
        if not fits_all(augmenter, pairs_grids(pairs)):
            return None
        out = tuple((augmenter.apply(i), augmenter.apply(o)) for i, o in pairs)
    return out[:-1], out[-1]


def _unique(tasks: Iterable[LeaveOut]) -> list[LeaveOut]:
    return list(dict.fromkeys(tasks))


def reference_tasks(demos: Sequence[Pair], families: Iterable[str], n: int, seed: int) -> list[LeaveOut]:
    """`get_test_time_train_data` for one leave-out size: the tasks the adapter trains on (self-edit.py:268-314)."""
    families = [f for f in FAMILIES if f in set(families)]
    rng = np.random.RandomState(seed)
    augmenters = [a for f in families for a in reference_family(f, seed)]
    initial = leave_n_tasks(demos, n)
    augmented = []
    for augmenter in augmenters:
        for task in initial:
            t = _augmented(task, augmenter)
            if t is not None:
                augmented.append(t)
    pool = _unique(augmented + initial)
    permuted = []
    for task in pool:
        if augmenters:
            colours = reference_colour_permutation(pairs_grids(task[0] + (task[1],)), rng)
            task = (tuple((colours.apply(i), colours.apply(o)) for i, o in task[0]),
                    (colours.apply(task[1][0]), colours.apply(task[1][1])))
        permuted.append((permute_examples(task[0], rng), task[1]))
    return _unique(permuted + pool)


def reference_examples(demos: Sequence[Pair], families: Iterable[str], fmt: PromptFormat, *, seed: int,
                       leave_two_out: bool) -> list[tuple[Prompt, str]]:
    """(prompt, completion) of every task of every leave-out size, in order, before the length filter and cap."""
    families = list(families)
    out = []
    for n in ((1, 2) if leave_two_out else (1,)):
        for task_demos, (held_in, held_out) in reference_tasks(demos, families, n, seed):
            out.append((fmt.task_prompt(task_demos, held_in), fmt.completion(held_out)))
    return out


def reference_cap(examples: list, max_examples: int, seed: int) -> list:
    """self-edit.py:361-364: over the cap, a seeded shuffle and the first `max_examples`; else unchanged."""
    if len(examples) <= max_examples:
        return list(examples)
    order = list(range(len(examples)))
    np.random.RandomState(seed).shuffle(order)
    return [examples[i] for i in order[:max_examples]]
