"""ARC self-edits a model writes for tasks: the prompt, batched sampling, and the memo that keeps every batch.

Sample i of every task comes from one batched call seeded `seed + 1000 * i`; a batch is memoized under the model
(and policy adapter), its settings, the rendered prompts, the sampling settings, batch size, seed and the code
that samples, so the base model's evaluation self-edits, and an untrained policy's (which equals the base model),
are sampled once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from seal_repro.codehash import code_fingerprint
from seal_repro.engine import generate_details, render_prompt
from seal_repro.fewshot.self_edit import self_edit_prompt
from seal_repro.fewshot.tasks import Task
from seal_repro.io import read_jsonl
from seal_repro.memo import Memo, key_of

SELF_EDITS = "self_edits.jsonl"
EVAL_SEED_OFFSET = 104_729  # the evaluation tasks' self-edits: the base model's and every policy's share seeds


def rl_seed(spec, iteration: int) -> int:
    """Seed of ReST-EM iteration `iteration`'s (0-based) training samples."""
    return spec.seed + 7919 * (iteration + 1)


def policy_prompt(task: Task, spec, tokenizer) -> str:
    return render_prompt(tokenizer, self_edit_prompt(task, spec.self_edit.template), spec.model.chat_template)


def sample_self_edits(model, tokenizer, tasks: Sequence[Task], n: int, spec, seed: int, *, memo: Memo | None = None,
                      model_fingerprint: str | None = None) -> list[dict]:
    """`n` sampled self-edit texts per task, as rows {task_id, index, text, tokens, truncated}, ordered by
    (task, index)."""
    s = spec.self_edit.sampling
    prompts = [policy_prompt(t, spec, tokenizer) for t in tasks]
    rows = []
    for i in tqdm(range(n), desc="self-edits", unit="sample", dynamic_ncols=True):
        args = dict(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                    batch_size=spec.evaluation.batch_size, seed=seed + 1000 * i)
        key = None if memo is None or model_fingerprint is None else key_of({
            "arc_samples": code_fingerprint(__name__), "model": model_fingerprint,
            "model_spec": spec.model.model_dump(mode="json"), "prompts": prompts, **args})
        hit = memo.get(key) if key else None
        gens = hit["generations"] if hit else [g.__dict__ for g in generate_details(model, tokenizer, prompts, **args)]
        if key and not hit:
            memo.put(key, {"generations": gens})
        rows += [{"task_id": t.id, "index": i, "text": g["text"].strip(), "tokens": g["tokens"],
                  "truncated": g["truncated"]} for t, g in zip(tasks, gens)]
    rows.sort(key=lambda r: (r["task_id"], r["index"]))
    return rows


def read_self_edits(folder: str | Path) -> dict[str, list[str]]:
    """{task id: self-edit texts in sample order} from a self_edits.jsonl."""
    out: dict[str, list[str]] = {}
    for row in sorted(read_jsonl(Path(folder) / SELF_EDITS), key=lambda r: (r["task_id"], r["index"])):
        out.setdefault(row["task_id"], []).append(row["text"])
    return out
