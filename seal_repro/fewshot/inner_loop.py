"""The few-shot ARC inner loop: for each (task, self-edit), a fresh LoRA trained as the self-edit chose
(augmentations, learning rate, epochs, loss on all tokens or the output grid only), then the task's
test outputs predicted with augmented voting; the round succeeds when every test output is solved.

A *kit* holds what computing a round needs, loaded once per process: the LoRA engine and a predictor
`predict(prompts) -> texts` built by an injected factory (the stages pass the lm-eval glue), which keeps this
module free of lm-eval; `memo` makes every round computed once, across conditions, RL and re-runs (keyed by the
round's content and the hash of the code computing it). An invalid self-edit is a failed round with its reason
recorded, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from seal_repro import models
from seal_repro.codehash import code_fingerprint
from seal_repro.engine import LoraEngine, TrainConfig, TrainExample, train_config as engine_config
from seal_repro.errors import AdapterNotApplied
from seal_repro.fewshot.formats import Prompt, format_of, render
from seal_repro.fewshot.grids import grid_to_text
from seal_repro.fewshot.reference_ttt import reference_cap, reference_examples
from seal_repro.fewshot.self_edit import SelfEdit, parser_for
from seal_repro.fewshot.tasks import Task
from seal_repro.fewshot.ttt_data import build_ttt_examples
from seal_repro.fewshot.vote import predict, task_solved
from seal_repro.memo import Memo, key_of, memoized
from seal_repro.memory import PeakMemory

PredictFn = Callable[[list[str]], list[str]]


class Predictor(Protocol):
    version: str | None

    def __call__(self, prompts: list[str]) -> list[str]: ...


class PredictorFactory(Protocol):
    """Builds a kit's predictor (the lm-eval glue, seal_repro/lmeval/arc.py); picklable."""

    code_modules: tuple[str, ...]

    def __call__(self, model, tokenizer, prompts_file: Path, spec) -> Predictor: ...


@dataclass
class Kit:
    engine: LoraEngine
    predict: Predictor
    code: str  # hash of the code that computes a round here (seal_repro.codehash)

    @property
    def device(self):
        return self.engine.device


@dataclass(frozen=True)
class KitRecipe:
    """How to build a kit: picklable, so a Ray worker builds its own (its paths travel by value, executor.ByValue).
    `policy_dir`: a policy adapter merged into the model first (the SEAL condition under rl.ttt_on_policy)."""

    spec: Any
    model_dir: str
    prompts_file: str
    predictor: PredictorFactory
    policy_dir: str | None = None

    @classmethod
    def of(cls, spec, model_dir, prompts_file, predictor, policy_dir=None) -> KitRecipe:
        return cls(spec, str(Path(model_dir).resolve()), str(Path(prompts_file).resolve()), predictor,
                   None if policy_dir is None else str(Path(policy_dir).resolve()))

    @property
    def code(self) -> str:
        """Hash of the code that computes a round with this recipe's kit (domain + predictor)."""
        return code_fingerprint(__name__, *self.predictor.code_modules)

    def __call__(self) -> Kit:
        if self.policy_dir is None:
            model, tok = models.load(self.spec.model, Path(self.model_dir))
        else:
            from seal_repro.policy import load_policy

            model, tok = load_policy(self.spec, Path(self.model_dir), Path(self.policy_dir))
        return self.build(model, tok)

    def build(self, model, tokenizer) -> Kit:
        engine = LoraEngine(model, tokenizer, self.spec.inner_loop.lora)
        predict = self.predictor(engine.base_model, tokenizer, Path(self.prompts_file), self.spec)
        return Kit(engine, predict, self.code)


def predictor_version(kit: Kit, _item=None):
    """The lm-eval task version a kit predicts with (run on a worker when the stage holds no kit)."""
    return kit.predict.version


@dataclass(frozen=True)
class Round:
    condition: str
    task: Task
    self_edit_index: int
    text: str | None  # what the policy wrote; None when the condition has no self-edit (icl)
    self_edit: SelfEdit | None  # parsed, the run's defaults filled in; None: no adaptation
    failure: str | None = None  # why `text` is not a valid self-edit

    @property
    def valid(self) -> bool:
        return self.failure is None

    def seed(self, spec_seed: int) -> int:
        # From the round's content, not its position: the same self-edit on the same task trains the
        # same adapter in every condition, so the memo shares it.
        edit = self.self_edit.to_json() if self.self_edit else ""
        blob = "\x1f".join([str(spec_seed), self.task.id, edit])
        return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "little")


def resolve_self_edit(text: str, spec) -> tuple[SelfEdit | None, str | None]:
    """(the self-edit with the spec's defaults filled in, None) or (None, why it is invalid), read as the spec's
    `self_edit.json_format` says (the reference's format brings its own defaults: a missing key trains 0 epochs)."""
    parsed = parser_for(spec.self_edit.json_format)(text)
    if not parsed.ok:
        return None, parsed.reason
    if spec.self_edit.json_format == "reference":  # complete already, with values outside our schema's bounds
        return parsed.self_edit, None
    return _with_defaults(parsed.self_edit, spec), None


def _with_defaults(edit: SelfEdit, spec) -> SelfEdit:
    il = spec.inner_loop
    return edit.with_defaults(loss_on=il.loss_on, learning_rate=il.lr, epochs=il.epochs)


def plan_rounds(condition: str, tasks: Sequence[Task], self_edits: dict[str, list[str]], spec) -> list[Round]:
    """icl: one unadapted round per task · oracle_ttt: the spec's fixed self-edit, once per task ·
    anything else (ttt_no_rl, seal, the RL's training rounds): one round per sampled self-edit text."""
    rounds = []
    for task in tasks:
        if condition == "icl":
            rounds.append(Round(condition, task, 0, None, None))
        elif condition == "oracle_ttt":  # a spec object in our schema, whatever self_edit.json_format says
            rounds.append(Round(condition, task, 0, spec.oracle.to_json(), _with_defaults(spec.oracle, spec)))
        else:
            for i, text in enumerate(self_edits.get(task.id, [])):
                edit, failure = resolve_self_edit(text, spec)
                rounds.append(Round(condition, task, i, text, edit, failure))
    return rounds


def planned_epochs(edit: SelfEdit, n_examples: int, spec) -> float:
    """The epochs a self-edit trains for on `n_examples` examples: its own, or 0 under `inner_loop.step_limit_rule:
    skip` when epochs x examples // batch_size exceeds max_steps (the reference's gate, few-shot/self-edit.py:553)."""
    il, epochs = spec.inner_loop, edit.training.epochs
    if il.step_limit_rule == "skip" and epochs * n_examples // il.batch_size > il.max_steps:
        return 0
    return epochs


def trains(edit: SelfEdit, n_examples: int, spec) -> bool:
    """Whether the adapter gets any update (0 epochs or a learning rate of 0, which the reference's JSON allows,
    leave it at B = 0: the model as it is)."""
    return n_examples > 0 and planned_epochs(edit, n_examples, spec) > 0 and edit.training.learning_rate > 0


def train_config(edit: SelfEdit, spec, n_examples: int | None = None) -> TrainConfig:
    """The inner loop's training settings with the self-edit's own learning rate, epochs and loss.

    Fractional epochs (the reference's JSON allows them) train as the HF Trainer does: ceil(epochs) passes, cut at
    ceil(epochs x optimizer steps per epoch). Under `step_limit_rule: skip` a run that passed the gate is not cut
    at max_steps (the reference has no cap: an odd example count can run a few steps past it)."""
    t, il = edit.training, spec.inner_loop
    epochs = t.epochs if n_examples is None else planned_epochs(edit, n_examples, spec)
    overrides = {"lr": t.learning_rate, "epochs": max(1, math.ceil(epochs))}
    if il.step_limit_rule == "skip":
        overrides["max_steps"] = None
    if n_examples is not None and epochs != int(epochs):
        per_epoch = max(1, math.ceil(n_examples / il.batch_size) // il.grad_accum)
        overrides["max_steps"] = math.ceil(epochs * per_epoch)
    return engine_config(il, mask_prompt=t.loss_on == "output_tokens", **overrides)


def _pairs(task: Task, edit: SelfEdit, spec, seed: int) -> list[tuple[Prompt, str]]:
    """(prompt, completion) of every TTT example of the spec's augmentation set, before the length filter (ours:
    already capped at max_examples)."""
    il, fmt = spec.inner_loop, format_of(spec)
    if il.augmentations == "reference":
        return reference_examples(task.train, edit.families, fmt, seed=seed, leave_two_out=il.leave_two_out)
    if fmt.name == "ours":
        raw = build_ttt_examples(task.train, edit.families, seed=seed, max_examples=il.max_examples,
                                 leave_two_out=il.leave_two_out)
        return [(Prompt(ex.prompt), ex.completion) for ex in raw]
    from seal_repro.fewshot.ttt_data import ttt_tasks  # our tasks, written in the reference's format

    return [(fmt.task_prompt(demos, q_in), fmt.completion(q_out))
            for demos, (q_in, q_out) in ttt_tasks(task.train, edit.families, seed=seed, max_examples=il.max_examples,
                                                  leave_two_out=il.leave_two_out)]


def ttt_examples(task: Task, edit: SelfEdit, spec, seed: int, tokenizer) -> tuple[list[TrainExample], int]:
    """(the adapter's training examples, how many were dropped for exceeding inner_loop.max_seq_len). The reference's
    augmentation set caps at max_examples after that filter (as the reference), ours before it."""
    il = spec.inner_loop
    kept, dropped = [], 0
    for prompt, completion in _pairs(task, edit, spec, seed):
        text = render(tokenizer, prompt, spec.model.chat_template)
        n = len(tokenizer(text + completion, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        if n > il.max_seq_len:
            dropped += 1  # truncating would cut off the answer grid, the part that carries the signal
        else:
            kept.append(TrainExample(completion=completion, prompt=text))
    if il.augmentations == "reference":
        kept = reference_cap(kept, il.max_examples, seed)
    return kept, dropped


def round_key(rnd: Round, spec, model_fingerprint: str, code: str) -> str:
    t = rnd.task
    return key_of({
        "code": code, "model": model_fingerprint, "dtype": spec.model.dtype,
        "chat_template": spec.model.chat_template,
        "task": [t.id, [list(map(grid_to_text, p)) for p in t.train], [grid_to_text(i) for i, _ in t.test]],
        "self_edit": rnd.self_edit.to_json() if rnd.self_edit else None,
        "inner_loop": spec.inner_loop.model_dump(mode="json") if rnd.self_edit else None,
        "seed": rnd.seed(spec.seed),
        "evaluation": spec.evaluation.model_dump(
            mode="json", include={"n_attempts", "max_new_tokens", "vote_families", "voting", "prompt_format"}),
    })


@dataclass(frozen=True)
class Job:
    round: Round
    spec: Any

    def describe(self) -> str:
        return f"round {self.round.condition}/{self.round.task.id}"


def compute_round(kit: Kit, job: Job) -> dict:
    """Reset, train on the self-edit's TTT data, check the adapter took, predict with votes; `memory` is the
    round's peak memory (seal_repro/memory.py)."""
    rnd, spec, engine = job.round, job.spec, kit.engine
    seed = rnd.seed(spec.seed)
    engine.reset(seed)  # B = 0: the model is the base model until trained
    train = None
    responses: list[str] = []

    def logged(prompts: list[str]) -> list[str]:
        out = kit.predict(prompts)
        responses.extend(out)
        return out

    with PeakMemory(engine.device) as peak:
        if rnd.self_edit is not None:
            examples, dropped = ttt_examples(rnd.task, rnd.self_edit, spec, seed, engine.tokenizer)
            cfg = train_config(rnd.self_edit, spec, len(examples))
            trained = trains(rnd.self_edit, len(examples), spec)
            stats = engine.train(examples if trained else [], cfg, seed=seed)
            # Zero steps is legitimate (every example too long; a self-edit asking for 0 epochs or one skipped by the
            # step limit); steps that changed nothing mean a broken adapter — unless the only step ran at the
            # warmup's learning rate of 0.
            moved = stats.steps > 1 or (stats.steps == 1 and cfg.warmup_for(stats.steps) == 0)
            if moved and not engine.logits_differ_from_base():
                raise AdapterNotApplied(
                    f"adapter for task {rnd.task.id} ({rnd.condition}) left the model's logits unchanged after "
                    f"{stats.steps} steps (check the self-edit's learning_rate / inner_loop.lora.target_modules)"
                )
            train = {"examples": len(examples), "dropped_too_long": dropped, "steps": stats.steps,
                     "real_tokens": stats.real_tokens, "seconds": round(stats.seconds, 3),
                     "final_loss": stats.final_loss, "epochs": planned_epochs(rnd.self_edit, len(examples), spec)}
        attempts = predict(rnd.task, logged, spec)
    return {
        "seed": seed, "train": train, "responses": responses,
        "attempts": [[grid_to_text(g) for g in per_test] for per_test in attempts],
        "solved": task_solved(attempts, rnd.task), "memory": peak.as_dict(),
    }


def run_rounds(rounds: Sequence[Round], kit: Kit | None, spec, model_fingerprint: str, memo: Memo,
               desc: str = "inner loop", executor=None, code: str | None = None) -> list[dict]:
    """Run (or fetch from the memo) every round; one flat record per round, `solved` False for invalid self-edits.

    `executor` (seal_repro.executor; None: this process, on `kit`) computes the rounds the memo lacks, each
    distinct round once; each result is memoized as it arrives. `kit` may be None when every round goes to Ray
    workers (which build their own); `code` is then the recipe's."""
    def compute(todo: list[int]):
        jobs = [Job(rounds[i], spec) for i in todo]
        if executor is None:  # in this process; this module imports no executor (its memo key leaves it out)
            return ((j, compute_round(kit, job)) for j, job in enumerate(jobs))
        return executor.run(compute_round, jobs, kit, describe=Job.describe)

    code = code or kit.code
    keys = [round_key(rnd, spec, model_fingerprint, code) if rnd.valid else None for rnd in rounds]
    results = memoized(memo, keys, compute, desc)
    invalid = {"seed": None, "train": None, "responses": [], "attempts": [], "solved": False}
    out = []
    for rnd, result in zip(rounds, results):
        out.append({
            "condition": rnd.condition, "task_id": rnd.task.id, "self_edit_index": rnd.self_edit_index,
            "self_edit_text": rnd.text, "self_edit": json.loads(rnd.self_edit.to_json()) if rnd.self_edit else None,
            "valid": rnd.valid, "failure": rnd.failure, **(result if rnd.valid else invalid),
        })
    return out
