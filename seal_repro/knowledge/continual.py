"""Continual self-edits: K passages edited into one model in sequence, scored after every edit (forgetting).

As the reference's continual_self_edits.py: at step t the *current* model writes a self-edit for passage t,
a fresh LoRA is trained on it (the inner loop's settings), evaluated on passages 0..t, then merged into the
weights, so step t+1 starts from a model holding every earlier edit. Row 0 of the retention matrix is the
unedited model on all K passages; row r (1..K) is the model after r edits, on passages 0..r-1 (NaN after).
"""

from __future__ import annotations

import random
import warnings
from typing import Callable, Sequence

import numpy as np

from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainConfig, TrainExample
from seal_repro.knowledge.sequences import training_sequences

EditFn = Callable[[object, Passage, int], str]  # (current model, passage, step) -> self-edit text
AccuracyFn = Callable[[Sequence[Passage]], dict[str, float]]  # passages -> accuracy of the current model on each


def draw_orders(passages: Sequence[Passage], n: int, sequences: int, seed: int) -> list[list[Passage]]:
    """`sequences` independent draws of n passages (without replacement within a draw), seeded."""
    return [random.Random(seed * 7919 + s).sample(list(passages), n) for s in range(sequences)]


def run_sequence(model, tokenizer, order: Sequence[Passage], spec, edit_fn: EditFn, accuracy_fn: AccuracyFn,
                 seed: int) -> dict:
    """Edit `order` into `model` one passage at a time (the model object is modified in place)."""
    k = len(order)
    matrix = np.full((k + 1, k), np.nan)
    first = accuracy_fn(order)
    matrix[0] = [first[p.id] for p in order]
    cfg = TrainConfig.from_inner_loop(spec.inner_loop)
    edits, train = [], []
    for t, passage in enumerate(order):
        edit = edit_fn(model, passage, t)
        seqs = training_sequences(edit, passage.title, passage.context, spec.inner_loop)
        engine = LoraEngine(model, tokenizer, spec.inner_loop.lora)
        engine.reset(seed + t)
        stats = engine.train([TrainExample(s) for s in seqs], cfg, seed=seed + t)
        acc = accuracy_fn(order[: t + 1])
        matrix[t + 1, : t + 1] = [acc[p.id] for p in order[: t + 1]]
        model = engine.peft_model.merge_and_unload()  # the same model object, now holding the edit in its weights
        edits.append({"step": t, "passage_id": passage.id, "text": edit})
        train.append({"step": t, "steps": stats.steps, "final_loss": stats.final_loss, "sequences": len(seqs)})
    return {"matrix": matrix, "order": [p.id for p in order], "self_edits": edits, "train": train}


def drops(matrix: np.ndarray) -> np.ndarray:
    """drop[r, j] = accuracy on passage j right after learning it (row j+1) minus after r edits; NaN elsewhere."""
    k = matrix.shape[1]
    out = np.full_like(matrix, np.nan)
    for j in range(k):
        for r in range(j + 2, k + 1):
            out[r, j] = matrix[j + 1, j] - matrix[r, j]
    return out


def _nanmean(values) -> float | None:
    """Mean of the defined values, rounded for JSON; None when there are none."""
    values = np.asarray(values, dtype=float)
    return round(float(np.nanmean(values)), 6) if np.isfinite(values).any() else None


def forgetting_summary(matrix: np.ndarray) -> dict:
    """Mean drop of earlier passages after each edit, by how many edits ago they were learned, and overall."""
    d = drops(matrix)
    k = matrix.shape[1]
    by_step = {str(r): _nanmean(d[r]) for r in range(2, k + 1)}
    by_age = {str(a): _nanmean([d[j + 1 + a, j] for j in range(k - a)]) for a in range(1, k)}
    return {
        "mean_forgetting": by_step.get(str(k)),  # after the last edit, over every earlier passage
        "forgetting_by_step": by_step, "forgetting_by_age": by_age,
        "mean_just_learned": _nanmean([matrix[j + 1, j] for j in range(k)]),
        "final_mean_accuracy": _nanmean(matrix[k]),
        "initial_mean_accuracy": _nanmean(matrix[0]),
    }


def mean_matrix(matrices: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-wise mean and standard deviation over sequences (NaN cells stay NaN)."""
    stack = np.stack(matrices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (above the diagonal) are expected
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0) if len(matrices) > 1 else np.where(np.isnan(mean), np.nan, 0.0)
    return mean, std


def to_json(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(x) else round(float(x), 6) for x in row] for row in matrix]


def from_json(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if x is None else x for x in row] for row in rows], dtype=float)
