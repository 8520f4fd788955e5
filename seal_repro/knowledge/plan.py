"""Cost of a knowledge-incorporation spec before running it (the `Plan` and FLOP model: see seal_repro.plan).

Passage and answer lengths use typical values, since `plan` does not read the data file.

Besides the summary rows, every stage's work is recorded as `Part`s for the GPU plan (`render_gpu`): baselines
(the base model's — or the writer's — self-edits, and the conditions' rounds), rl (ReST-EM's sampling, rounds and
policy SFT, and the SEAL condition's sampling and rounds after each iteration), cpt (one training run per
condition, with CPT's own split, padding and batch) and continual (each sequence one job). With a separate
`self_edit.writer` (teacher–student SEAL), sampling and the policy SFT count the writer's parameters, and the
inner-loop rounds the student's (`model:`).
"""

from __future__ import annotations

import math

from seal_repro.errors import UserError
from seal_repro.plan import DTYPE_BYTES, Part, Plan, decode_part, model_params
from seal_repro.spec.executor import RayExecutor

PASSAGE_TOKENS = {"fictional": 130, "default": 160}  # SQuAD paragraphs average ~120 words
QA_PROMPT_TOKENS = 40
SELF_EDIT_LINES = 11  # `split: lines`: sequences a self-edit typically gives (the passage is one more)
PROMPT_EXTRA_TOKENS = 60  # the self-edit prompt's instructions around the passage


def sequences_per_edit(split: str, append_passage: bool) -> int:
    """Training sequences one self-edit gives under `split` (knowledge/sequences.py), the passage included."""
    return (SELF_EDIT_LINES if split == "lines" else 1) + int(append_passage)


def spec_workers(spec) -> int:
    """The executor's workers: Ray actors, or forked copies of a CPU stage (on a GPU the local executor runs every
    round in the stage's process: 1)."""
    ex = spec.executor
    if isinstance(ex, RayExecutor):
        return ex.workers
    return ex.workers if isinstance(ex.workers, int) and spec.model.device == "cpu" else 1


class _Models:
    """The student (`model:`, adapted by the inner loop) and the writer (samples self-edits, trained by the policy
    SFT): one model unless `self_edit.writer` is set."""

    def __init__(self, spec):
        self.student = spec.model
        self.writer = spec.self_edit.writer or spec.model
        self.separate = spec.self_edit.writer is not None
        self.n_student = model_params(self.student)
        self.n_writer = model_params(self.writer) if self.separate else self.n_student
        self.student_role = "student" if self.separate else "model"
        self.writer_role = "writer" if self.separate else "model"

    def roles(self) -> list[tuple[str, str]]:
        if not self.separate:
            return [("model", f"{self.student.name} ({self.n_student / 1e6:,.1f}M parameters; writes and is adapted)")]
        return [("student", f"{self.student.name} ({self.n_student / 1e6:,.1f}M parameters; adapted by the inner "
                 "loop)"), ("writer", f"{self.writer.name} ({self.n_writer / 1e6:,.1f}M parameters; samples the "
                 "self-edits, trained by the policy SFT)")]

    def student_kw(self) -> dict:
        return dict(model=self.student_role, params=self.n_student, dtype_bytes=DTYPE_BYTES[self.student.dtype])

    def writer_kw(self, spec) -> dict:
        backend = spec.self_edit.backend
        return dict(model=self.writer_role, params=self.n_writer, dtype_bytes=DTYPE_BYTES[self.writer.dtype],
                    backend="openai" if backend.kind == "openai" else "hf")


def sampling_batch(spec) -> int:
    """Self-edits decoded together: hf generates fixed batches of evaluation.batch_size; a server (openai) takes
    max_concurrency requests at once."""
    backend = spec.self_edit.backend
    return backend.max_concurrency if backend.kind == "openai" else spec.evaluation.batch_size


def _rounds_part(stage: str, what: str, spec, models: _Models, rounds: int, train_tokens: float, q: int) -> Part:
    """`rounds` inner-loop rounds (independent jobs, spread over the workers): `train_tokens` LoRA tokens in all,
    and each round's `q` questions answered in batches of evaluation.batch_size."""
    ev = spec.evaluation
    b = max(1, min(q, ev.batch_size))
    return Part(stage, what, lora_tokens=train_tokens, prompt_tokens=rounds * q * QA_PROMPT_TOKENS,
                new_tokens=rounds * q * ev.max_new_tokens, decode_steps=rounds * math.ceil(q / b) * ev.max_new_tokens,
                batch=b, jobs=max(rounds, 1), parallel=True, **models.student_kw())


def _repeat(part: Part, times: int) -> Part:
    """`part` run `times` times over (one sampling phase per iteration)."""
    for f in ("prompt_tokens", "new_tokens", "decode_steps", "lora_tokens", "full_tokens"):
        setattr(part, f, getattr(part, f) * times)
    return part


def plan_knowledge(spec) -> Plan:
    models = _Models(spec)
    n_params = models.n_student
    plan = Plan(spec.model.name, n_params, models=models.roles(), workers=spec_workers(spec))
    n = spec.data.n_passages or (8 if spec.data.kind == "fictional" else None)
    if n is None:
        raise UserError("data.n_passages: needed by `plan` when the data file is not read (set it)")
    il, ev, se = spec.inner_loop, spec.evaluation, spec.self_edit
    p_tok = PASSAGE_TOKENS.get(spec.data.kind, PASSAGE_TOKENS["default"])
    q_per_p = spec.data.questions_per_passage if spec.data.kind == "fictional" else 5
    edit_tok = se.sampling.max_new_tokens  # upper bound: a self-edit may stop earlier

    def seq_tokens(content: int, n_seqs: int) -> int:
        return n_seqs * il.max_seq_len if il.pad_to_max_len else min(content, n_seqs * il.max_seq_len)

    edit_seqs = sequences_per_edit(il.split, il.append_passage)
    per_round_tokens = {
        "passage": seq_tokens(p_tok, 1),
        "base_synthetic": seq_tokens(p_tok + edit_tok, edit_seqs),
        "teacher_synthetic": seq_tokens(p_tok + edit_tok, edit_seqs),
    }
    if "base_synthetic" in spec.conditions:  # sampled first, then the rounds
        plan.work(decode_part("baselines", "self-edit sampling", samples=n * se.n,
                              prompt=p_tok + PROMPT_EXTRA_TOKENS, new=edit_tok, batch=sampling_batch(spec),
                              **models.writer_kw(spec)))
    rounds = 0
    for cond in spec.conditions:
        if cond == "base":
            r, train = n, 0.0
        else:
            edits = 1 if cond == "passage" else se.n
            r = n * edits * ev.repeats
            train = r * per_round_tokens[cond] * il.epochs
        rounds += r
        plan.add(f"inner-loop rounds: {cond}", r)
        plan.work(_rounds_part("baselines", f"rounds: {cond}", spec, models, r, train, q_per_p))
    if "base_synthetic" in spec.conditions:
        plan.add("self-edit generations", n * se.n)
    plan.add("inner-loop rounds (all)", rounds)
    plan.add("questions answered", rounds * q_per_p)
    _plan_sections(plan, spec, n, p_tok, q_per_p, per_round_tokens, models)
    # Full fine-tuning also computes weight gradients: 6N per token instead of LoRA's 4N.
    plan.flops_from_parts()
    return plan


def _plan_sections(plan: Plan, spec, n: int, p_tok: int, q_per_p: int, per_round_tokens: dict,
                   models: _Models) -> None:
    """Rows and parts for the optional rl / cpt / continual sections."""
    il, ev, se = spec.inner_loop, spec.evaluation, spec.self_edit
    edit_tok = se.sampling.max_new_tokens
    prompt_tok = p_tok + PROMPT_EXTRA_TOKENS  # passage + self-edit instructions
    qa = QA_PROMPT_TOKENS + ev.max_new_tokens
    if spec.rl is not None:
        rl = spec.rl
        n_train = rl.train_data.n_passages or (8 if rl.train_data.kind == "fictional" else None)
        if n_train is None:
            raise UserError("rl.train_data.n_passages: needed by `plan` when the data file is not read (set it)")
        q_train = rl.train_data.questions_per_passage if rl.train_data.kind == "fictional" else 5
        n_train = min(n_train, rl.passages_per_iteration or n_train)  # the passages one iteration samples for
        sampled = rl.iterations + int(rl.held_in_check)  # the held-in check samples and rewards once more
        gens = sampled * n_train * rl.k
        sample_rounds = gens * rl.repeats
        base_rounds = sampled * n_train * (1 if rl.baseline == "base" else rl.repeats)
        kept = n_train * {"best1": 1, "top_m": rl.top_m or 1, "beats_baseline": rl.k,
                          "solved": rl.k}[rl.keep]  # at most
        train = sample_rounds * per_round_tokens["base_synthetic"] * il.epochs
        train += 0 if rl.baseline == "base" else base_rounds * per_round_tokens["passage"] * il.epochs
        sft = rl.iterations * kept * (prompt_tok + edit_tok) * rl.sft.epochs
        rl_parts = [
            plan.work(_repeat(decode_part("rl", "ReST-EM self-edit sampling", samples=n_train * rl.k,
                                          prompt=prompt_tok, new=edit_tok, batch=sampling_batch(spec),
                                          **models.writer_kw(spec)), sampled)),
            plan.work(_rounds_part("rl", "ReST-EM rounds (+ baseline)", spec, models, sample_rounds + base_rounds,
                                   train, q_train)),
            plan.work(Part("rl", "policy SFT", lora_tokens=sft, **models.writer_kw(spec))),
        ]
        gen = sum(p.prompt_tokens + p.new_tokens for p in rl_parts)
        plan.add(f"RL: self-edit generations ({rl.iterations} it.)", gens, f"{n_train} passages x k={rl.k}")
        plan.add("RL: inner-loop rounds", sample_rounds + base_rounds, f"x{rl.repeats} repeats, + baseline")
        plan.add("RL: policy SFT tokens (at most)", sft, f"keep: {rl.keep}")
        plan.add("RL: tokens (train + generated)", train + sft + gen)
        rl_flops = sum(p.flops for p in rl_parts)
        plan.add("RL: TFLOPs (train + generation)", rl_flops / 1e12, f"= {rl_flops:.3e} FLOPs")
        seal_gens = rl.iterations * n * se.n
        seal_rounds = seal_gens * ev.repeats
        plan.add("SEAL eval: self-edit generations", seal_gens, "every iteration, for the curve")
        plan.add("SEAL eval: inner-loop rounds", seal_rounds)
        plan.work(_repeat(decode_part("rl", "SEAL self-edit sampling", samples=n * se.n, prompt=prompt_tok,
                                      new=edit_tok, batch=sampling_batch(spec), **models.writer_kw(spec)),
                          rl.iterations))
        plan.work(_rounds_part("rl", "SEAL rounds", spec, models, seal_rounds,
                               seal_rounds * per_round_tokens["base_synthetic"] * il.epochs, q_per_p))
    if spec.cpt is not None:
        _plan_cpt(plan, spec, n, p_tok, q_per_p, models)
    if spec.continual is not None:
        c = spec.continual
        k = c.n_passages
        steps = c.sequences * k
        answered = c.sequences * (k + k * (k + 1) // 2) * q_per_p
        plan.add("continual: edits (generate + train + merge)", steps, f"{c.sequences} sequence(s) of {k}")
        plan.add("continual: questions answered", answered)
        c_tok = (c.sampling or se.sampling).max_new_tokens
        # Each sequence is one job (its own model); inside it, one self-edit at a time (batch 1).
        plan.work(decode_part("continual", "self-edit sampling (in the jobs)", samples=steps, prompt=prompt_tok,
                              new=c_tok, batch=1, jobs=c.sequences, parallel=True, **models.student_kw()))
        b = ev.batch_size
        per_seq_steps = (math.ceil(k * q_per_p / b) + sum(math.ceil(j * q_per_p / b) for j in range(1, k + 1)))
        plan.work(Part("continual", "train + merge + re-score", lora_tokens=steps * per_round_tokens[
            "base_synthetic"] * il.epochs, prompt_tokens=answered * QA_PROMPT_TOKENS,
            new_tokens=answered * ev.max_new_tokens, decode_steps=c.sequences * per_seq_steps * ev.max_new_tokens,
            batch=min(b, k * q_per_p), jobs=c.sequences, parallel=True, **models.student_kw()))


def _plan_cpt(plan: Plan, spec, n: int, p_tok: int, q_per_p: int, models: _Models) -> None:
    """CPT: one training run per condition on all `m` passages' sequences, with CPT's own split (`cpt.split`, else
    the inner loop's), padding and sequence length; each condition one job (side by side over the workers), or,
    with `cpt.distributed`, one after another, each over `processes` GPUs."""
    cpt, il, se, ev = spec.cpt, spec.inner_loop, spec.self_edit, spec.evaluation
    m = cpt.n_passages or n
    split = cpt.split or il.split
    edit_tok = se.sampling.max_new_tokens

    def tokens(content: int, n_seqs: int) -> int:
        return n_seqs * cpt.max_seq_len if cpt.pad_to_max_len else min(content, n_seqs * cpt.max_seq_len)

    # The passage-only condition: the passage (and, under segments with the reference rules, a title-only line).
    passage_seqs = 1 + int(split == "segments" and il.split_rules == "reference")
    per_edit_seqs = sequences_per_edit(split, il.append_passage)
    per_edit = tokens(p_tok + edit_tok, per_edit_seqs)
    total = 0.0
    qs = m * q_per_p
    b = max(1, min(qs, ev.batch_size))
    dist = cpt.distributed
    for cond in cpt.conditions:
        if cond == "base":
            t = 0.0
        elif cond == "passage":
            t = m * tokens(p_tok, passage_seqs)
        else:
            available = se.n if cond != "teacher_synthetic" else (1 if spec.data.kind == "fictional" else 5)
            k = min(cpt.self_edits_per_passage or available, available)
            t = m * k * per_edit
        t *= cpt.epochs
        total += t
        train = {"full_tokens" if cpt.method == "full" else "lora_tokens": t}
        plan.work(Part("cpt", f"{cond} ({cpt.method}{f', {dist.processes} GPUs' if dist else ''})", **train,
                       prompt_tokens=qs * QA_PROMPT_TOKENS, new_tokens=qs * ev.max_new_tokens,
                       decode_steps=math.ceil(qs / b) * ev.max_new_tokens, batch=b, rate="cpt",
                       parallel=dist is None, group=None if dist else "cpt", gpus=dist.processes if dist else 1,
                       **models.student_kw()))
    padded = f", padded to {cpt.max_seq_len}" if cpt.pad_to_max_len else ""
    plan.add(f"CPT: training tokens ({cpt.method})", total, f"{len(cpt.conditions)} conditions, {m} passages, "
             f"split {split}: {per_edit_seqs} sequence(s) a self-edit{padded}")
    plan.add("CPT: questions answered", len(cpt.conditions) * qs)
