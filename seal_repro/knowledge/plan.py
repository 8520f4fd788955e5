"""Cost of a knowledge-incorporation spec before running it (the `Plan` and FLOP model: see seal_repro.plan).

Passage and answer lengths use typical values, since `plan` does not read the data file.
"""

from __future__ import annotations

from seal_repro.errors import UserError
from seal_repro.plan import Plan, model_params

PASSAGE_TOKENS = {"fictional": 130, "default": 160}  # SQuAD paragraphs average ~120 words
QA_PROMPT_TOKENS = 40


def plan_knowledge(spec) -> Plan:
    n_params = model_params(spec.model)
    plan = Plan(spec.model.name, n_params)
    n = spec.data.n_passages or (8 if spec.data.kind == "fictional" else None)
    if n is None:
        raise UserError("data.n_passages: needed by `plan` when the data file is not read (set it)")
    il, ev, se = spec.inner_loop, spec.evaluation, spec.self_edit
    p_tok = PASSAGE_TOKENS.get(spec.data.kind, PASSAGE_TOKENS["default"])
    q_per_p = spec.data.questions_per_passage if spec.data.kind == "fictional" else 5
    edit_tok = se.sampling.max_new_tokens  # upper bound: a self-edit may stop earlier

    def seq_tokens(content: int, n_seqs: int) -> int:
        return n_seqs * il.max_seq_len if il.pad_to_max_len else content

    rounds = 0
    per_round_tokens = {
        "passage": seq_tokens(p_tok, 1),
        "base_synthetic": seq_tokens(p_tok + edit_tok, 12),
        "teacher_synthetic": seq_tokens(p_tok + edit_tok, 12),
    }
    for cond in spec.conditions:
        if cond == "base":
            r = n
        else:
            edits = 1 if cond == "passage" else se.n
            r = n * edits * ev.repeats
            plan.train_tokens += r * per_round_tokens[cond] * il.epochs
        rounds += r
        plan.add(f"inner-loop rounds: {cond}", r)
        qa_tok = r * q_per_p * (QA_PROMPT_TOKENS + ev.max_new_tokens)
        plan.gen_tokens += qa_tok
    if "base_synthetic" in spec.conditions:
        gens = n * se.n
        plan.add("self-edit generations", gens)
        plan.gen_tokens += gens * (p_tok + 60 + edit_tok)
    plan.add("inner-loop rounds (all)", rounds)
    plan.add("questions answered", rounds * q_per_p)
    full_tokens = _plan_sections(plan, spec, n, p_tok, q_per_p, per_round_tokens, n_params)
    # Full fine-tuning also computes weight gradients: 6N per token instead of LoRA's 4N.
    plan.train_flops = 4 * n_params * plan.train_tokens + 2 * n_params * full_tokens
    plan.gen_flops = 2 * n_params * plan.gen_tokens
    return plan


def _plan_sections(plan: Plan, spec, n: int, p_tok: int, q_per_p: int, per_round_tokens: dict, n_params: int) -> float:
    """Rows for the optional rl / cpt / continual sections; returns the tokens trained with full fine-tuning."""
    il, ev, se = spec.inner_loop, spec.evaluation, spec.self_edit
    edit_tok = se.sampling.max_new_tokens
    prompt_tok = p_tok + 60  # passage + self-edit instructions
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
        kept = n_train * {"best1": 1, "top_m": rl.top_m or 1, "beats_baseline": rl.k, "solved": rl.k}[rl.keep]  # at most
        train = sample_rounds * per_round_tokens["base_synthetic"] * il.epochs
        train += 0 if rl.baseline == "base" else base_rounds * per_round_tokens["passage"] * il.epochs
        sft = rl.iterations * kept * (prompt_tok + edit_tok) * rl.sft.epochs
        gen = gens * (prompt_tok + edit_tok) + (sample_rounds + base_rounds) * q_train * qa
        plan.add(f"RL: self-edit generations ({rl.iterations} it.)", gens, f"{n_train} passages x k={rl.k}")
        plan.add("RL: inner-loop rounds", sample_rounds + base_rounds, f"x{rl.repeats} repeats, + baseline")
        plan.add("RL: policy SFT tokens (at most)", sft, f"keep: {rl.keep}")
        plan.add("RL: tokens (train + generated)", train + sft + gen)
        rl_flops = 4 * n_params * (train + sft) + 2 * n_params * gen
        plan.add("RL: TFLOPs (train + generation)", rl_flops / 1e12, f"= {rl_flops:.3e} FLOPs")
        seal_gens = rl.iterations * n * se.n
        seal_rounds = seal_gens * ev.repeats
        plan.add("SEAL eval: self-edit generations", seal_gens, "every iteration, for the curve")
        plan.add("SEAL eval: inner-loop rounds", seal_rounds)
        plan.train_tokens += train + sft + seal_rounds * per_round_tokens["base_synthetic"] * il.epochs
        plan.gen_tokens += gen + seal_gens * (prompt_tok + edit_tok) + seal_rounds * q_per_p * qa
    full = 0.0
    if spec.cpt is not None:
        cpt = spec.cpt
        m = cpt.n_passages or n
        per_edit = per_round_tokens["base_synthetic"]
        tokens = 0.0
        for cond in cpt.conditions:
            if cond == "passage":
                tokens += m * per_round_tokens["passage"]
            elif cond != "base":
                available = se.n if cond != "teacher_synthetic" else (1 if spec.data.kind == "fictional" else 5)
                k = min(cpt.self_edits_per_passage or available, available)
                tokens += m * k * per_edit
        tokens *= cpt.epochs
        plan.add(f"CPT: training tokens ({cpt.method})", tokens, f"{len(cpt.conditions)} conditions, {m} passages")
        plan.add("CPT: questions answered", len(cpt.conditions) * m * q_per_p)
        plan.train_tokens += tokens
        full += tokens if cpt.method == "full" else 0.0
        plan.gen_tokens += len(cpt.conditions) * m * q_per_p * qa
    if spec.continual is not None:
        c = spec.continual
        k = c.n_passages
        steps = c.sequences * k
        answered = c.sequences * (k + k * (k + 1) // 2) * q_per_p
        plan.add("continual: edits (generate + train + merge)", steps, f"{c.sequences} sequence(s) of {k}")
        plan.add("continual: questions answered", answered)
        plan.train_tokens += steps * per_round_tokens["base_synthetic"] * il.epochs
        plan.gen_tokens += steps * (prompt_tok + edit_tok) + answered * qa
    return full
