"""SEAL for few-shot ARC: ReST-EM on the training tasks (the core loop is seal_repro/rest_em.py), then the SEAL
condition — the trained policy's self-edits for the evaluation tasks, each → TTT → solved?

Each self-edit is rewarded 1 when its adapter solves its task (the inner loop) and the policy is fine-tuned on
every rewarded self-edit (keep rule `solved`; loss on the self-edit only, never on its prompt). The policy is a
LoRA on the base model (`rl.sft.lora`) in a `LoraEngine` of its own; with its adapter reset (B = 0) it *is* the
base model, which is what the first iteration samples from. Under `rl.ttt_on_policy` the SEAL condition's rounds run
on the base model with the trained policy merged in (as the reference's), else on the base model. Each iteration fine-tunes from the base model on that
iteration's rewarded self-edits (ReST-EM's E-step / M-step); an iteration with nothing to fine-tune on keeps the
previous policy.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

from seal_repro import models, rest_em
from seal_repro.engine import LoraEngine, TrainExample
from seal_repro.fewshot.conditions import evaluate
from seal_repro.fewshot.inner_loop import KitRecipe, PredictorFactory, plan_rounds, run_rounds
from seal_repro.fewshot.self_edit import parser_for
from seal_repro.fewshot.self_edits import EVAL_SEED_OFFSET, SELF_EDITS, policy_prompt, read_self_edits, rl_seed, \
    sample_self_edits
from seal_repro.fewshot.tasks import Task, read_tasks
from seal_repro.executor import local_executor
from seal_repro.io import write_json, write_jsonl
from seal_repro.policy import load_policy, policy_fingerprint
from seal_repro.memo import Memo, fingerprint_model_dir


def sft_examples(kept: Sequence[tuple[Task, str]], spec, tokenizer) -> tuple[list[TrainExample], int]:
    """((self-edit prompt -> the kept self-edit) pairs, how many were dropped for exceeding rl.sft.max_seq_len).
    The completion is the JSON object the policy wrote, without any prose around it (the reward judged the object
    alone)."""
    out, dropped = [], 0
    for task, text in kept:
        parsed = parser_for(spec.self_edit.json_format)(text)
        if not parsed.ok:
            continue
        prompt = policy_prompt(task, spec, tokenizer)
        n = len(tokenizer(prompt + parsed.json_text, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        if n > spec.rl.sft.max_seq_len:
            dropped += 1  # truncation would cut off the self-edit, leaving nothing to learn from
        else:
            out.append(TrainExample(completion=parsed.json_text, prompt=prompt))
    return out, dropped


def run_rl(spec, model_dir: Path, tasks_dir: Path, out: Path, predictor: PredictorFactory, memo: Memo) -> dict:
    """ReST-EM, then the policy's self-edits for the evaluation tasks; writes policy/, records.jsonl (the
    rewarded training rounds), self_edits.jsonl and summary.json; returns the summary."""
    train_tasks, eval_tasks = read_tasks(tasks_dir, "train"), read_tasks(tasks_dir, "eval")
    by_id = {t.id: t for t in train_tasks}
    recipe = KitRecipe(spec, str(Path(model_dir).resolve()), str((Path(tasks_dir) / "prompts.jsonl").resolve()),
                       predictor)
    # Two copies of the base model: one carries the per-round TTT adapters, the other the policy.
    kit = recipe()
    policy_model, policy_tok = models.load(spec.model, Path(model_dir))
    policy = LoraEngine(policy_model, policy_tok, spec.rl.sft.lora)
    policy.reset(spec.seed)  # B = 0: iteration 0 samples from the base model
    base_fp = fingerprint_model_dir(model_dir)
    state = {"fingerprint": base_fp}  # what the policy is now: the base model until an SFT trains it
    records, iterations = [], []
    executor = local_executor(spec.executor, spec.model.device)
    for it in range(spec.rl.iterations):
        round_records: list[dict] = []
        dropped = {"n": 0}

        def sample(tasks, it=it):
            rows = sample_self_edits(policy.peft_model, policy_tok, tasks, spec.self_edit.n_train, spec,
                                     seed=rl_seed(spec, it), memo=memo, model_fingerprint=state["fingerprint"])
            return [rest_em.Sample(r["task_id"], r["index"], r["text"], r["tokens"], r["truncated"]) for r in rows]

        def reward(samples, it=it):
            texts: dict[str, list[str]] = {}
            for s in samples:
                texts.setdefault(s.context_id, []).append(s.text)
            rounds = run_rounds(plan_rounds("rl", train_tasks, texts, spec), kit, spec, base_fp, memo,
                                desc="rl rounds", executor=executor)
            round_records.extend({**r, "iteration": it, "reward": int(r["solved"])} for r in rounds)
            solved = {(r["task_id"], r["self_edit_index"]): float(r["solved"]) for r in rounds}
            return [rest_em.Scored(s, solved[(s.context_id, s.index)], solved[(s.context_id, s.index)]) for s in samples]

        def sft(kept, it=it):
            examples, dropped["n"] = sft_examples([(by_id[r.sample.context_id], r.sample.text) for r in kept],
                                                  spec, policy_tok)
            stats = rest_em.sft_policy(policy, examples, spec.rl.sft, seed=spec.seed + it) if examples else None
            if stats is not None:  # the policy changed: what it samples next is keyed by its adapter's bytes
                policy.save_adapter(out / "policy")
                state["fingerprint"] = policy_fingerprint(model_dir, out / "policy")
            return stats

        result = rest_em.iterate(train_tasks, sample=sample, reward=reward, keep=spec.rl.keep, top_m=None, sft=sft)
        records += round_records
        iterations.append({
            "iteration": it, "sampled": len(round_records), "valid": sum(r["valid"] for r in round_records),
            "rewarded": len(result.kept), "sft_dropped_too_long": dropped["n"], "sft": result.sft,
            "metrics": result.metrics,
        })
    trained = any(i["sft"] is not None for i in iterations)
    policy.save_adapter(out / "policy")
    # An untrained policy (adapter B = 0) is the base model: sampled under the base model's fingerprint, its
    # evaluation self-edits come from the memo the base model's sampling filled.
    rows = sample_self_edits(policy.peft_model, policy_tok, eval_tasks, spec.self_edit.n_eval, spec,
                             seed=spec.seed + EVAL_SEED_OFFSET, memo=memo, model_fingerprint=state["fingerprint"])
    write_jsonl(out / "records.jsonl", records)
    write_jsonl(out / SELF_EDITS, rows)
    if spec.rl.ttt_on_policy and trained:
        # The reference's SEAL condition: TTT and prediction on the base model with the policy merged in. An
        # untrained policy merged in is the base model, so it keeps the base kit (and its memoized rounds).
        del kit, policy, policy_model  # the merged model is a third copy of the weights: free the other two first
        gc.collect()
        merged, merged_tok = load_policy(spec, Path(model_dir), out / "policy")
        seal_kit, seal_fp = recipe.build(merged, merged_tok), policy_fingerprint(model_dir, out / "policy")
    else:
        seal_kit, seal_fp = kit, base_fp
    seal = evaluate("seal", eval_tasks, read_self_edits(out), seal_kit, spec, seal_fp, memo, out / "seal")
    rewards = [r["reward"] for r in records]
    summary = {
        "skipped": False, "iterations": iterations, "policy_trained": trained,
        "train_success_rate": sum(rewards) / len(rewards) if rewards else None,
        "eval_self_edits": "sampled from the policy" if trained else "the base model's (policy untrained, so identical)",
        "memo_hits": memo.hits, "memo_misses": memo.misses, "lm_eval_task_version": seal_kit.predict.version,
        "seal_ttt_base": "the base model with the policy merged in" if seal_fp != base_fp else "the base model",
        "seal": seal,
    }
    write_json(out / "summary.json", summary)
    print(f"rl: {len(rewards)} rounds, {sum(rewards)} rewarded, policy trained: {trained} -> {out}")
    return summary
