"""The single-passage inner loop: for each (passage, self-edit, repeat) train a fresh LoRA and answer τ.

A *kit* holds what computing a round needs, loaded once per process: the LoRA engine over the (policy) model and a
scoring function `score(question_ids) -> answers`. The scorer is injected (`KitRecipe.scorer`, the stages pass the
lm-eval glue), which keeps this module free of lm-eval. `run_rounds` keys every round by its content and the
hash of the code computing it, takes what the memo holds and sends the rest to the executor.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.errors import AdapterNotApplied
from seal_repro.policy import load_policy
from seal_repro.knowledge.sequences import training_sequences
from seal_repro.memo import Memo, key_of, memoized
from seal_repro.memory import PeakMemory

if TYPE_CHECKING:
    from seal_repro.spec.experiment import ExperimentSpec

ScoreFn = Callable[[list[str]], list[dict]]


@dataclass(frozen=True)
class Round:
    condition: str
    passage: Passage
    self_edit_index: int
    self_edit: str | None  # None: no self-edit (base, or train on the passage alone)
    repeat: int
    sequences: tuple[str, ...]  # empty: no adaptation (the base condition)

    def seed(self, spec_seed: int) -> int:
        # The reference seeds rounds from the wall clock; we derive each round's seed from the spec
        # seed and the round's content, so a run is reproducible and identical rounds share a seed.
        blob = "\x1f".join([str(spec_seed), self.passage.id, "\x1e".join(self.sequences), str(self.repeat)])
        return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "little")

    def describe(self) -> str:
        return f"round {self.condition}/{self.passage.id}/edit {self.self_edit_index}/repeat {self.repeat}"


# -- the kit ------------------------------------------------------------------------------------------------------
class Scorer(Protocol):
    version: str | None

    def score(self, question_ids: list[str]) -> list[dict]: ...


class ScorerFactory(Protocol):
    """Builds the scorer of a kit (the lm-eval glue, seal_repro/lmeval/knowledge.py); picklable."""

    code_modules: tuple[str, ...]  # the modules whose code scores a round (part of every round's memo key)

    def __call__(self, model, tokenizer, questions_file: Path, spec) -> Scorer: ...


@dataclass
class Kit:
    engine: LoraEngine
    scorer: Scorer
    code: str  # hash of the code that computes a round here (seal_repro.codehash)

    @property
    def device(self):
        return self.engine.device


@dataclass(frozen=True)
class KitRecipe:
    """How to build a kit: picklable, so a Ray worker can build its own (paths absolute: a worker's working
    directory is not the driver's on another node)."""

    spec: ExperimentSpec
    model_dir: str
    questions_file: str
    scorer: ScorerFactory
    policy_dir: str | None = None  # a policy adapter merged into the model first (knowledge.policy.load_policy)

    @classmethod
    def of(cls, spec, model_dir, questions_file, scorer, policy_dir=None) -> KitRecipe:
        return cls(spec, str(Path(model_dir).resolve()), str(Path(questions_file).resolve()), scorer,
                   None if policy_dir is None else str(Path(policy_dir).resolve()))

    @property
    def code(self) -> str:
        """Hash of the code that computes a round with this recipe's kit (domain + scorer)."""
        return code_fingerprint(__name__, *self.scorer.code_modules)

    def __call__(self) -> Kit:
        model, tok = load_policy(self.spec, Path(self.model_dir), None if self.policy_dir is None else Path(self.policy_dir))
        return self.build(model, tok)

    def build(self, model, tokenizer) -> Kit:
        """A kit over a model already loaded (the stage's, shared with its sampling)."""
        engine = LoraEngine(model, tokenizer, self.spec.inner_loop.lora)
        scorer = self.scorer(engine.base_model, tokenizer, Path(self.questions_file), self.spec)
        return Kit(engine, scorer, self.code)


# -- rounds -------------------------------------------------------------------------------------------------------
def plan_rounds(condition: str, passages: Sequence[Passage], self_edits: dict[str, list[str]],
                spec: ExperimentSpec) -> list[Round]:
    rounds = []
    repeats = 1 if condition == "base" else spec.evaluation.repeats
    for p in passages:
        if condition in ("base", "passage"):
            edits: list[str | None] = [None]
        elif condition == "teacher_synthetic":  # the teacher's first self_edit.n (the paper evaluates the first)
            edits = list(p.teacher_self_edits)[: spec.self_edit.n]
        else:  # base_synthetic and every condition whose self-edits a policy wrote (SEAL, RL samples)
            edits = list(self_edits.get(p.id, []))
        for i, edit in enumerate(edits):
            seqs = () if condition == "base" else tuple(training_sequences(edit, p.title, p.context, spec.inner_loop))
            for r in range(repeats):
                rounds.append(Round(condition, p, i, edit, r, seqs))
    return rounds


def round_key(rnd: Round, spec: ExperimentSpec, model_fingerprint: str, code: str) -> str:
    trains = bool(rnd.sequences)
    return key_of({
        "code": code, "model": model_fingerprint, "dtype": spec.model.dtype, "chat_template": spec.model.chat_template,
        "sequences": list(rnd.sequences), "lora": spec.inner_loop.lora.model_dump(mode="json") if trains else None,
        "train": train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt).__dict__ if trains else None,
        "seed": rnd.seed(spec.seed) if trains else None,
        "questions": [(q.id, q.question) for q in rnd.passage.questions], "title": rnd.passage.title,
        "answer_prompt": spec.evaluation.answer_prompt, "max_new_tokens": spec.evaluation.max_new_tokens,
        "stop": list(spec.evaluation.stop), "batch_size": spec.evaluation.batch_size,
    })


@dataclass(frozen=True)
class Job:
    """A round as the executor ships it: the round, the settings, and where to save its adapter (if anywhere)."""

    round: Round
    spec: ExperimentSpec
    adapter_dir: str | None = None

    def describe(self) -> str:
        return self.round.describe()


def compute_round(kit: Kit, job: Job) -> dict:
    """Reset the adapter, train it on the round's sequences, check it took, answer the passage's questions; the
    result's `memory` is the round's peak memory (seal_repro/memory.py)."""
    rnd, spec, engine = job.round, job.spec, kit.engine
    seed = rnd.seed(spec.seed)
    engine.reset(seed)
    stats = None
    with PeakMemory(engine.device) as peak:
        if rnd.sequences:
            cfg = train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt)
            stats = engine.train([TrainExample(s) for s in rnd.sequences], cfg, seed=seed)
            if not engine.logits_differ_from_base():
                raise AdapterNotApplied(
                    f"adapter for passage {rnd.passage.id} ({rnd.condition}) left the model's logits unchanged: "
                    "training had no effect (check inner_loop.lr / inner_loop.lora.target_modules)"
                )
            if job.adapter_dir is not None:
                engine.save_adapter(job.adapter_dir)
        t0 = time.perf_counter()
        answers = kit.scorer.score([q.id for q in rnd.passage.questions])
        answer_seconds = time.perf_counter() - t0
    return {
        "memory": peak.as_dict(),
        "seed": seed if rnd.sequences else None,
        "train": None if stats is None else {
            "steps": stats.steps, "real_tokens": stats.real_tokens, "seconds": round(stats.seconds, 3),
            "final_loss": stats.final_loss,
        },
        # wall time of answering the round's questions through lm-eval (the report's timing share, issue 18)
        "answer": {"questions": len(answers), "seconds": round(answer_seconds, 3)},
        "answers": answers,
    }


def compute_rounds(kit: Kit, jobs: list[Job]) -> list[dict]:
    """A group of rounds trained together (LoraEngine.train_many: one forward/backward per step over all their
    rows, each through its own adapter) and answered in one batched generation; each round's result equals its
    `compute_round` result up to float rounding. The rounds share the group's peak memory."""
    if len(jobs) == 1 or not all(j.round.sequences for j in jobs) or not hasattr(kit.scorer, "score_slots"):
        return [compute_round(kit, j) for j in jobs]
    spec, engine = jobs[0].spec, kit.engine
    cfg = train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt)
    seeds = [j.round.seed(spec.seed) for j in jobs]
    with PeakMemory(engine.device) as peak:
        bank, stats = engine.train_many([([TrainExample(s) for s in j.round.sequences], seed)
                                         for j, seed in zip(jobs, seeds)], cfg)
        for b, job in enumerate(jobs):
            bank.load(b)  # the engine's adapter is slot b: probe it, save it, as compute_round does
            if not engine.logits_differ_from_base():
                raise AdapterNotApplied(
                    f"adapter for passage {job.round.passage.id} ({job.round.condition}) left the model's logits "
                    "unchanged: training had no effect (check inner_loop.lr / inner_loop.lora.target_modules)")
            if job.adapter_dir is not None:
                engine.save_adapter(job.adapter_dir)
        t0 = time.perf_counter()
        answers = kit.scorer.score_slots(bank, [[q.id for q in j.round.passage.questions] for j in jobs])
        answer_seconds = (time.perf_counter() - t0) / len(jobs)  # one batched generation, shared out as train's
    return [{
        "memory": peak.as_dict(), "seed": seed,
        "train": {"steps": st.steps, "real_tokens": st.real_tokens, "seconds": round(st.seconds, 3),
                  "final_loss": st.final_loss},
        "answer": {"questions": len(ans), "seconds": round(answer_seconds, 3)},
        "answers": ans,
    } for seed, st, ans in zip(seeds, stats, answers)]


def _groups(keys: Sequence[str], size: int) -> list[list[int]]:
    """The rounds (first index of each distinct key, in order) cut into groups of `size`. Fixed by the whole
    list, not by what the memo lacks, so a resumed run trains every round in the group it had (a round's float
    rounding depends on its group)."""
    seen: set[str] = set()
    firsts = [i for i, k in enumerate(keys) if not (k in seen or seen.add(k))]
    return [firsts[i: i + size] for i in range(0, len(firsts), size)]


def run_rounds(rounds: Sequence[Round], kit: Kit | None, spec: ExperimentSpec, model_fingerprint: str, memo: Memo,
               desc: str = "inner loop", executor=None, first_adapter_dir: Path | None = None,
               code: str | None = None) -> list[dict]:
    """Run (or fetch from the memo) every round; one record per round with its answers, in the rounds' order.

    `executor` (seal_repro.executor; None: in this process, on `kit`) computes the rounds the memo lacks, each
    once; every result is memoized the moment it arrives. `first_adapter_dir`: rounds[0]'s adapter is saved there
    when this call trains it in this process (`save_first_adapter` covers the other cases). `kit` may be None
    when every round goes to Ray workers (which build their own); `code` is then the recipe's.
    """
    local = executor is None or executor.kind == "local"  # a Ray worker may sit on another node's disk
    size = spec.executor.rounds_per_batch

    def job(i: int) -> Job:
        return Job(rounds[i], spec, str(first_adapter_dir) if (i == 0 and local and first_adapter_dir) else None)

    def compute(todo: list[int]):
        if size == 1:
            jobs = [job(i) for i in todo]
            yield from in_process(jobs, kit) if executor is None else executor.run(compute_round, jobs, kit,
                                                                                     describe=Job.describe)
            return
        at = {i: j for j, i in enumerate(todo)}
        groups = [g for g in _groups(keys, size) if any(i in at for i in g)]
        items = [[job(i) for i in g] for g in groups]
        done = ((k, compute_rounds(kit, jobs)) for k, jobs in enumerate(items)) if executor is None else \
            executor.run(compute_rounds, items, kit, describe=lambda jobs: jobs[0].describe() + f" (+{len(jobs) - 1})")
        for k, results in done:
            for i, result in zip(groups[k], results):
                if i in at:
                    yield at[i], result

    code = code or kit.code
    keys = [round_key(rnd, spec, model_fingerprint, code) for rnd in rounds]
    results = memoized(memo, keys, compute, desc)
    return [{
        "condition": rnd.condition, "passage_id": rnd.passage.id, "self_edit_index": rnd.self_edit_index,
        "repeat": rnd.repeat, "self_edit": rnd.self_edit, "n_sequences": len(rnd.sequences), **result,
    } for rnd, result in zip(rounds, results)]


def in_process(jobs: Sequence[Job], kit: Kit):
    """(index, result) of each job computed here, one after another (what an executor does when none is given;
    this module imports none, so the code that computes a round — its memo key — leaves the executor out)."""
    for i, job in enumerate(jobs):
        yield i, compute_round(kit, job)


def save_first_adapter(rounds: Sequence[Round], kit: Kit, spec: ExperimentSpec, adapter_dir: Path) -> None:
    """rounds[0]'s adapter, for the stock `lm_eval` CLI, when run_rounds did not save it (the round came from the
    memo, or ran on a Ray worker): trained again here, seeded, so it is the same adapter."""
    if rounds and rounds[0].sequences and not (Path(adapter_dir) / "adapter_config.json").exists():
        kit.engine.reset(rounds[0].seed(spec.seed))
        kit.engine.train([TrainExample(s) for s in rounds[0].sequences],
                         train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt),
                         seed=rounds[0].seed(spec.seed))
        kit.engine.save_adapter(adapter_dir)


def peak_memory_of(results: Sequence[dict]) -> dict:
    """The largest per-round peak memory among `results` (stage summaries report it; rounds from an older memo
    entry without a measurement are left out)."""
    measured = [r["memory"] for r in results if r.get("memory")]
    return {
        "round_peak_rss_mb": max((m["peak_rss_mb"] for m in measured), default=None),
        "round_peak_gpu_mb": max((m["peak_gpu_mb"] for m in measured), default=None),
    }
