"""ReST-EM for few-shot ARC: the policy samples self-edits for the training tasks, each self-edit is
rewarded 1 when its adapter solves its task (the inner loop), and the policy is fine-tuned on every
rewarded self-edit (loss on the self-edit only, never on its prompt).

The policy is a LoRA on the base model (`spec.rl.sft.lora`) in a `LoraEngine` of its own; with its
adapter reset (B = 0) it *is* the base model, which is what the first iteration samples from. Each
iteration fine-tunes from the base model on that iteration's rewarded self-edits (ReST-EM's E-step /
M-step); an iteration with nothing to fine-tune on keeps the previous policy. How a self-edit is
scored is injected (`evaluate_fn`), which keeps lm-eval out of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from seal_repro.engine import LoraEngine, TrainConfig, TrainExample, generate, render_prompt
from seal_repro.fewshot.inner_loop import Round, plan_rounds
from seal_repro.fewshot.self_edit import parse_self_edit, self_edit_prompt
from seal_repro.fewshot.tasks import Task

EvaluateFn = Callable[[list[Round]], list[dict]]  # rounds -> one record per round with "solved"


def policy_prompt(task: Task, spec, tokenizer) -> str:
    return render_prompt(tokenizer, self_edit_prompt(task, spec.self_edit.template), spec.model.chat_template)


def sample_self_edits(model, tokenizer, tasks: Sequence[Task], n: int, spec, seed: int) -> list[dict]:
    """`n` sampled self-edit texts per task, as rows {task_id, index, text}, ordered by (task, index).

    Sample i of every task comes from one batched call seeded `seed + 1000 * i`, so the base model and
    an untrained policy (which equals it) write the same self-edits.
    """
    s = spec.self_edit.sampling
    prompts = [policy_prompt(t, spec, tokenizer) for t in tasks]
    rows = []
    for i in tqdm(range(n), desc="self-edits", unit="sample", dynamic_ncols=True):
        texts = generate(model, tokenizer, prompts, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                         top_p=s.top_p, batch_size=spec.evaluation.batch_size, seed=seed + 1000 * i)
        rows += [{"task_id": t.id, "index": i, "text": text.strip()} for t, text in zip(tasks, texts)]
    rows.sort(key=lambda r: (r["task_id"], r["index"]))
    return rows


def sft_config(spec) -> TrainConfig:
    sft = spec.rl.sft
    return TrainConfig(epochs=sft.epochs, lr=sft.lr, batch_size=sft.batch_size, mask_prompt=True,
                       lr_schedule="linear", max_seq_len=spec.inner_loop.max_seq_len,
                       packing=spec.inner_loop.packing)


def sft_examples(kept: Sequence[tuple[Task, str]], spec, tokenizer) -> tuple[list[TrainExample], int]:
    """((self-edit prompt -> the kept self-edit) pairs, how many were dropped for exceeding
    inner_loop.max_seq_len). The completion is the JSON object the policy wrote, without any prose
    around it (the reward judged the object alone)."""
    out, dropped = [], 0
    for task, text in kept:
        parsed = parse_self_edit(text)
        if not parsed.ok:
            continue
        prompt = policy_prompt(task, spec, tokenizer)
        n = len(tokenizer(prompt + parsed.json_text, add_special_tokens=False)["input_ids"]) + 1  # + EOS
        if n > spec.inner_loop.max_seq_len:
            dropped += 1  # truncation would cut off the self-edit, leaving nothing to learn from
        else:
            out.append(TrainExample(completion=parsed.json_text, prompt=prompt))
    return out, dropped


@dataclass
class RestEMResult:
    records: list[dict] = field(default_factory=list)  # one per (iteration, training task, sample)
    iterations: list[dict] = field(default_factory=list)  # per iteration: sampled, valid, rewarded, SFT stats

    @property
    def trained(self) -> bool:
        return any(it["sft"] is not None for it in self.iterations)


def rest_em(spec, train_tasks: Sequence[Task], policy: LoraEngine, evaluate_fn: EvaluateFn) -> RestEMResult:
    """Run `spec.rl.iterations` ReST-EM iterations; `policy` ends holding the trained policy adapter."""
    result = RestEMResult()
    by_id = {t.id: t for t in train_tasks}
    policy.reset(spec.seed)  # B = 0: iteration 0 samples from the base model
    for it in range(spec.rl.iterations):
        rows = sample_self_edits(policy.peft_model, policy.tokenizer, train_tasks, spec.self_edit.n_train, spec,
                                 seed=spec.seed + 7919 * (it + 1))
        texts: dict[str, list[str]] = {}
        for r in rows:
            texts.setdefault(r["task_id"], []).append(r["text"])
        records = evaluate_fn(plan_rounds("rl", train_tasks, texts, spec))
        kept = [(by_id[r["task_id"]], r["self_edit_text"]) for r in records if r["solved"]]
        sft = None
        examples, dropped = sft_examples(kept, spec, policy.tokenizer)
        if examples:
            policy.reset(spec.seed + it)
            stats = policy.train(examples, sft_config(spec), seed=spec.seed + it)
            sft = {"examples": len(examples), "steps": stats.steps, "seconds": round(stats.seconds, 3),
                   "final_loss": stats.final_loss}
        result.records += [{**r, "iteration": it, "reward": int(r["solved"])} for r in records]
        result.iterations.append({
            "iteration": it, "sampled": len(records), "valid": sum(r["valid"] for r in records),
            "rewarded": len(kept), "sft_dropped_too_long": dropped, "sft": sft,
        })
    return result
