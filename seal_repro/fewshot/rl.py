"""SEAL for few-shot ARC: ReST-EM on the training tasks (the core loop is seal_repro/rest_em.py), then the SEAL
condition — the trained policy's self-edits for the evaluation tasks, each → TTT → solved?

Each self-edit is rewarded 1 when its adapter solves its task (the inner loop) and the policy is fine-tuned on
every rewarded self-edit (keep rule `solved`; loss on the self-edit only, never on its prompt). The policy is a
LoRA on the base model (`rl.sft.lora`) in a `LoraEngine` of its own; with its adapter reset (B = 0) it *is* the
base model, which is what the first iteration samples from. Under `rl.ttt_on_policy` the SEAL condition's rounds run
on the base model with the trained policy merged in (as the reference's), else on the base model. Each iteration fine-tunes from the base model on that
iteration's rewarded self-edits (ReST-EM's E-step / M-step); an iteration with nothing to fine-tune on keeps the
previous policy.

Models on the stage's process: the policy engine, created on first use (hf sampling on a memo miss, or the SFT),
and, with the local executor, the kit the rounds adapt. With Ray the workers build their own kits (the SEAL one
with the policy merged in, from its adapter shipped by value) and the stage holds no kit; with the openai backend
the server samples from the policy's saved adapter, so the stage loads the policy only to fine-tune it.
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
from seal_repro.executor import free_device_memory, local_executor, make_executor, remote
from seal_repro.io import write_json, write_jsonl
from seal_repro.policy import load_policy, policy_fingerprint
from seal_repro.memo import Memo, fingerprint_model_dir
from seal_repro.models import load_tokenizer
from seal_repro.sampling import HFSampler, open_sampler


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


class _Policy:
    """The policy: a LoRA engine on its own copy of the base model, created on first use. With its adapter reset
    (B = 0) it is the base model, which is what iteration 0 samples from; `adapter` is its saved adapter once an
    SFT trained it (None: the base model), what a completions server serves."""

    def __init__(self, spec, model_dir: Path):
        self.spec, self.model_dir = spec, Path(model_dir)
        self._engine: LoraEngine | None = None
        self._tok = None
        self.adapter: Path | None = None

    @property
    def engine(self) -> LoraEngine:
        if self._engine is None:
            model, tok = models.load(self.spec.model, self.model_dir)
            self._engine = LoraEngine(model, tok, self.spec.rl.sft.lora)
            self._engine.reset(self.spec.seed)  # B = 0: the base model until an SFT trains it
            self._tok = self._tok or tok
        return self._engine

    @property
    def tokenizer(self):
        if self._tok is None:
            self._tok = load_tokenizer(self.spec.model, self.model_dir)
        return self._tok

    def sampler(self):
        """The spec's sampler over the policy as it is now (hf: this engine, loaded on a memo miss)."""
        if self.spec.self_edit.backend.kind == "hf":
            return HFSampler(tokenizer=self.tokenizer, load=lambda: (self.engine.peft_model, self.tokenizer))
        return open_sampler(self.spec, self.model_dir, self.adapter, tokenizer=self.tokenizer)

    def drop(self) -> None:
        self._engine = None
        free_device_memory()


def run_rl(spec, model_dir: Path, tasks_dir: Path, out: Path, predictor: PredictorFactory, memo: Memo) -> dict:
    """ReST-EM, then the policy's self-edits for the evaluation tasks; writes policy/, records.jsonl (the
    rewarded training rounds), self_edits.jsonl and summary.json; returns the summary."""
    train_tasks, eval_tasks = read_tasks(tasks_dir, "train"), read_tasks(tasks_dir, "eval")
    by_id = {t.id: t for t in train_tasks}
    recipe = KitRecipe.of(spec, model_dir, Path(tasks_dir) / "prompts.jsonl", predictor)
    on_workers = remote(spec.executor)
    # Two copies of the base model: one carries the per-round TTT adapters (here only with the local executor;
    # Ray workers build their own), the other the policy.
    kit = None if on_workers else recipe()
    policy = _Policy(spec, model_dir)
    base_fp = fingerprint_model_dir(model_dir)
    state = {"fingerprint": base_fp}  # what the policy is now: the base model until an SFT trains it
    records, iterations = [], []
    executor = make_executor(spec.executor, recipe, spec.model.device) if on_workers \
        else local_executor(spec.executor, spec.model.device)
    for it in range(spec.rl.iterations):
        round_records: list[dict] = []
        dropped = {"n": 0}

        def sample(tasks, it=it):
            with policy.sampler() as sampler:
                rows = sample_self_edits(sampler, policy.tokenizer, tasks, spec.self_edit.n_train, spec,
                                         seed=rl_seed(spec, it), memo=memo, model_fingerprint=state["fingerprint"])
            return [rest_em.Sample(r["task_id"], r["index"], r["text"], r["tokens"], r["truncated"]) for r in rows]

        def reward(samples, it=it):
            texts: dict[str, list[str]] = {}
            for s in samples:
                texts.setdefault(s.context_id, []).append(s.text)
            with executor:
                rounds = run_rounds(plan_rounds("rl", train_tasks, texts, spec), kit, spec, base_fp, memo,
                                    desc="rl rounds", executor=executor, code=recipe.code)
            round_records.extend({**r, "iteration": it, "reward": int(r["solved"])} for r in rounds)
            solved = {(r["task_id"], r["self_edit_index"]): float(r["solved"]) for r in rounds}
            return [rest_em.Scored(s, solved[(s.context_id, s.index)], solved[(s.context_id, s.index)]) for s in samples]

        def sft(kept, it=it):
            examples, dropped["n"] = sft_examples([(by_id[r.sample.context_id], r.sample.text) for r in kept],
                                                  spec, policy.tokenizer)
            stats = rest_em.sft_policy(policy.engine, examples, spec.rl.sft, seed=spec.seed + it) if examples else None
            if stats is not None:  # the policy changed: what it samples next is keyed by its adapter's bytes
                policy.engine.save_adapter(out / "policy")
                policy.adapter = out / "policy"
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
    policy.engine.save_adapter(out / "policy")
    # An untrained policy (adapter B = 0) is the base model: sampled under the base model's fingerprint, its
    # evaluation self-edits come from the memo the base model's sampling filled.
    with policy.sampler() as sampler:
        rows = sample_self_edits(sampler, policy.tokenizer, eval_tasks, spec.self_edit.n_eval, spec,
                                 seed=spec.seed + EVAL_SEED_OFFSET, memo=memo, model_fingerprint=state["fingerprint"])
    write_jsonl(out / "records.jsonl", records)
    write_jsonl(out / SELF_EDITS, rows)
    if spec.rl.ttt_on_policy and trained:
        # The reference's SEAL condition: TTT and prediction on the base model with the policy merged in. An
        # untrained policy merged in is the base model, so it keeps the base kit (and its memoized rounds).
        del kit  # the merged model is a third copy of the weights: free the other two first
        policy.drop()
        seal_recipe = KitRecipe.of(spec, model_dir, recipe.prompts_file, predictor, out / "policy")
        if on_workers:
            seal_kit = None
        else:
            merged, merged_tok = load_policy(spec, Path(model_dir), out / "policy")
            seal_kit = seal_recipe.build(merged, merged_tok)
        seal_fp = policy_fingerprint(model_dir, out / "policy")
    else:
        policy.drop()
        seal_recipe, seal_kit, seal_fp = recipe, kit, base_fp
    seal_executor = make_executor(spec.executor, seal_recipe, spec.model.device) if on_workers else executor
    with seal_executor:
        seal = evaluate("seal", eval_tasks, read_self_edits(out), seal_kit, spec, seal_fp, memo, out / "seal",
                        executor=seal_executor, code=seal_recipe.code)
    rewards = [r["reward"] for r in records]
    summary = {
        "skipped": False, "iterations": iterations, "policy_trained": trained,
        "train_success_rate": sum(rewards) / len(rewards) if rewards else None,
        "eval_self_edits": "sampled from the policy" if trained else "the base model's (policy untrained, so identical)",
        "memo_hits": memo.hits, "memo_misses": memo.misses, "lm_eval_task_version": seal["lm_eval_task_version"],
        "seal_ttt_base": "the base model with the policy merged in" if seal_fp != base_fp else "the base model",
        "seal": seal,
    }
    write_json(out / "summary.json", summary)
    print(f"rl: {len(rewards)} rounds, {sum(rewards)} rewarded, policy trained: {trained} -> {out}")
    return summary
