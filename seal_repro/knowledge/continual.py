"""Continual self-edits: K passages edited into one model in sequence, scored after every edit (forgetting).

As the reference's continual_self_edits.py: at step t the *current* model writes a self-edit for passage t,
a fresh LoRA is trained on it (the inner loop's settings), evaluated on passages 0..t, then merged into the
weights, so step t+1 starts from a model holding every earlier edit. Row 0 of the retention matrix is the
unedited model on all K passages; row r (1..K) is the model after r edits, on passages 0..r-1 (NaN after).

`run_continual` runs `continual.sequences` random orders, each memoized whole (a sequence cannot be split: each
step starts from the previous one's weights), so a re-run caused by an unrelated upstream change costs nothing.
Each sequence is one job on the spec's executor (forked copies side by side on a CPU, or Ray workers: one GPU and
one model each; the stage itself loads none). Its self-edits are always sampled with Hugging Face generate, from
the model as edited so far (no server holds that model).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.executor import local_executor, make_executor, remote
from seal_repro.io import write_json, write_jsonl
from seal_repro.knowledge.baselines import read_passages
from seal_repro.knowledge.grading import grade_records
from seal_repro.knowledge.inner_loop import ScorerFactory
from seal_repro.models import resolve_device
from seal_repro.policy import load_policy, policy_fingerprint
from seal_repro.knowledge.self_edits import CONTINUAL_SEED_OFFSET, CONTINUAL_SEED_STRIDE, write_self_edits
from seal_repro.knowledge.sequences import training_sequences
from seal_repro.memo import Memo, key_of

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
    cfg = train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt)
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


def edit_cis(matrices: Sequence[np.ndarray], resamples: int, seed: int) -> dict:
    """95% CIs of the mean forgetting after the last edit and of the just-learned accuracy, bootstrapped over
    sequences (the passages of one sequence share its model), or over passages when there is one sequence."""
    from seal_repro.stats import accuracy_ci

    k = matrices[0].shape[1]
    forgot = [[float(m[j + 1, j] - m[k, j]) for j in range(k - 1)] for m in matrices]
    learned = [[float(m[j + 1, j]) for j in range(k)] for m in matrices]
    out = {}
    for name, groups in (("mean_forgetting", forgot), ("mean_just_learned", learned)):
        units = groups if len(groups) > 1 else [[v] for v in groups[0]]
        units = [[v for v in u if v == v] for u in units]
        ci = accuracy_ci([u for u in units if u], "micro", resamples, seed)
        out[f"{name}_ci"] = None if ci.low != ci.low else [round(ci.low, 6), round(ci.high, 6)]
    return out


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


def _one_self_edit_spec(spec):
    """The spec with one self-edit per passage, sampled as `continual.sampling` says (if it says)."""
    se = spec.self_edit.model_copy(update={"n": 1})
    if spec.continual.sampling is not None:
        se = se.model_copy(update={"sampling": spec.continual.sampling})
    return spec.model_copy(update={"self_edit": se})


@dataclass(frozen=True)
class ContinualRecipe:
    """What a worker needs to run sequences (picklable; its paths travel by value to Ray workers, executor.ByValue):
    each sequence loads its own start model, so the kit is the recipe itself."""

    spec: Any
    model_dir: str
    questions_file: str
    scorer: ScorerFactory
    policy_dir: str | None = None

    @classmethod
    def of(cls, spec, model_dir, questions_file, scorer, policy_dir=None) -> ContinualRecipe:
        return cls(spec, str(Path(model_dir).resolve()), str(Path(questions_file).resolve()), scorer,
                   None if policy_dir is None else str(Path(policy_dir).resolve()))

    def __call__(self) -> ContinualRecipe:
        return self

    @property
    def device(self) -> str:
        return resolve_device(self.spec.model.device)


@dataclass(frozen=True)
class SequenceJob:
    index: int
    order: tuple[Passage, ...]

    def describe(self) -> str:
        return f"continual sequence {self.index}"


def run_sequence_job(kit: ContinualRecipe, job: SequenceJob) -> dict:
    """One sequence, from a freshly loaded start model (the executor's round function)."""
    spec = kit.spec
    return _sequence(spec, _one_self_edit_spec(spec), Path(kit.model_dir), Path(kit.questions_file),
                     None if kit.policy_dir is None else Path(kit.policy_dir), list(job.order), job.index,
                     {p.id: p for p in job.order}, kit.scorer)


def run_continual(spec, model_dir: Path, data_dir: Path, policy: Path | None, out: Path, scorer: ScorerFactory,
                  memo: Memo) -> dict:
    """Every sequence of edits; `policy`: the final SEAL policy (continual.start: seal), else None (the base)."""
    cs = spec.continual
    passages = read_passages(data_dir)
    one = _one_self_edit_spec(spec)
    start_fp = policy_fingerprint(model_dir, policy)
    code = code_fingerprint(__name__, *scorer.code_modules)
    orders = draw_orders(passages, cs.n_passages, cs.sequences, spec.seed)
    keys = [key_of({
        "continual": s, "code": code, "start": start_fp, "dtype": spec.model.dtype,
        "chat_template": spec.model.chat_template, "passages": [p.to_dict() for p in order],
        "self_edit": one.self_edit.model_dump(mode="json"), "inner_loop": spec.inner_loop.model_dump(mode="json"),
        "evaluation": spec.evaluation.model_dump(mode="json"), "seed": spec.seed,
    }) for s, order in enumerate(orders)]
    results = [memo.get(key) for key in keys]
    todo = [s for s, done in enumerate(results) if done is None]
    if todo:
        recipe = ContinualRecipe.of(spec, model_dir, Path(data_dir) / "questions.jsonl", scorer, policy)
        executor = make_executor(spec.executor, recipe, spec.model.device) if remote(spec.executor) \
            else local_executor(spec.executor, spec.model.device)
        jobs = [SequenceJob(s, tuple(orders[s])) for s in todo]
        with executor:
            for j, done in executor.run(run_sequence_job, jobs, recipe, describe=SequenceJob.describe):
                s = todo[j]
                memo.put(keys[s], done)
                results[s] = done
                print(f"continual sequence {s}: {len(orders[s])} edits")
    matrices, sequences, records, edits = [], [], [], []
    for done in results:
        matrices.append(from_json(done["sequence"]["matrix"]))
        sequences.append(done["sequence"])
        records += done["records"]
        edits += done["self_edits"]
    mean, std = mean_matrix(matrices)
    summary = {
        "skipped": False, "start": cs.start, "n_passages": cs.n_passages, "sequences": cs.sequences,
        "matrix": to_json(mean), "matrix_std": to_json(std), **forgetting_summary(mean),
        **edit_cis(matrices, spec.evaluation.bootstrap_resamples, spec.seed),
        "per_sequence": sequences, "memo_hits": memo.hits, "memo_misses": memo.misses,
    }
    write_jsonl(out / "records.jsonl", records)
    write_jsonl(out / "self_edits.jsonl", edits)
    write_json(out / "summary.json", summary)
    return summary


def _sequence(spec, one, model_dir, questions_file, policy, order, s: int, by_id, scorer) -> dict:
    """One sequence of edits from a freshly loaded start model: its matrix, graded records and self-edits."""
    seq_records: list[dict] = []
    model, tok = load_policy(spec, model_dir, policy)  # every sequence starts from the same model
    score = scorer(model, tok, Path(questions_file), spec)
    row = {"n": 0}

    def accuracy(seen):
        answers = {a["question_id"]: a for a in score.score([q.id for p in seen for q in p.questions])}
        rounds = [{"condition": "continual", "passage_id": p.id, "self_edit_index": 0, "repeat": 0,
                   "answers": [answers[q.id] for q in p.questions]} for p in seen]
        graded = grade_records(spec, rounds, by_id, sequence=s, after_edits=row["n"])
        seq_records.extend(graded)
        row["n"] += 1
        acc = {}
        for p in seen:
            marks = [r["correct"] for r in graded if r["passage_id"] == p.id and r["correct"] is not None]
            acc[p.id] = sum(marks) / len(marks) if marks else float("nan")
        return acc

    def edit(current, passage, t):
        offset = CONTINUAL_SEED_OFFSET + s * CONTINUAL_SEED_STRIDE + t
        return write_self_edits(current, tok, one, [passage], seed_offset=offset)[0]["text"]

    result = run_sequence(model, tok, order, spec, edit, accuracy, seed=spec.seed + 7919 * s)
    sequence = {"order": result["order"], "matrix": to_json(result["matrix"]), "train": result["train"],
                **forgetting_summary(result["matrix"])}
    return {"sequence": sequence, "records": seq_records,
            "self_edits": [{**e, "sequence": s} for e in result["self_edits"]]}
