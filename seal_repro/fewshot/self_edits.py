"""ARC self-edits a model writes for tasks: the prompt, batched sampling, and the memo that keeps every batch.

Sample i of every task comes from one batched call seeded `seed + 1000 * i`; a batch is memoized under the model
(and policy adapter), its settings, the rendered prompts, the sampling settings, batch size, seed and the code
that samples, so the base model's evaluation self-edits, and an untrained policy's (which equals the base model),
are sampled once.

Under `self_edit.resample` the tasks whose sample i is invalid (read as `self_edit.json_format` says) are sampled
again, in one batch per try (try t seeded `seed + 1000 * i + RETRY_STRIDE * t`), up to `max_tries` samples; the
row keeps the last text and counts its `tries`. Under `self_edit.decoding: json_schema` generation is constrained
to the format's grammar (seal_repro/fewshot/constrained.py; Hugging Face generate only).

`sample_self_edits` takes a sampler (seal_repro/sampling.py: the stage's model, loaded on first use, or an
OpenAI-compatible server serving the policy as a LoRA) or, as before, a model and its tokenizer; the backend kind
is part of every batch's memo key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from seal_repro.codehash import code_fingerprint
from seal_repro.engine import generate_details
from seal_repro.fewshot.formats import Prompt, format_of, render
from seal_repro.fewshot.self_edit import parser_for, self_edit_prompt
from seal_repro.fewshot.tasks import Task
from seal_repro.io import read_jsonl
from seal_repro.memo import Memo, key_of
from seal_repro.sampling import as_sampler

SELF_EDITS = "self_edits.jsonl"
EVAL_SEED_OFFSET = 104_729  # the evaluation tasks' self-edits: the base model's and every policy's share seeds
RETRY_STRIDE = 1_000_003  # re-sample seeds: past any first-try seed (1000 x at most 256 samples)


def rl_seed(spec, iteration: int) -> int:
    """Seed of ReST-EM iteration `iteration`'s (0-based) training samples."""
    return spec.seed + 7919 * (iteration + 1)


def policy_prompt(task: Task, spec, tokenizer) -> str:
    """The rendered prompt asking for a self-edit: `self_edit.system` (if any) and the template with the task's
    demonstrations in the spec's prompt format."""
    se = spec.self_edit
    user = self_edit_prompt(task, se.template, format_of(spec))
    return render(tokenizer, Prompt(user, se.system or ""), spec.model.chat_template)


def sample_self_edits(model, tokenizer, tasks: Sequence[Task], n: int, spec, seed: int, *, memo: Memo | None = None,
                      model_fingerprint: str | None = None) -> list[dict]:
    """`n` sampled self-edit texts per task, as rows {task_id, index, text, tokens, truncated, tries}, ordered by
    (task, index). `model`: a sampler (seal_repro/sampling.py; `tokenizer` unused) or a model."""
    s, se = spec.self_edit.sampling, spec.self_edit
    sampler = as_sampler(model, tokenizer)
    prompts = [policy_prompt(t, spec, sampler.tokenizer) for t in tasks]
    valid = parser_for(se.json_format)
    max_tries = se.resample.max_tries if se.resample is not None else 1
    constrained = se.decoding == "json_schema"
    if constrained and sampler.kind != "hf":
        raise ValueError("self_edit.decoding: json_schema needs the hf sampling backend")
    made: dict = {}

    def constraint():  # built on the first batch the memo lacks: a memoized phase loads no model for it
        if constrained and "c" not in made:
            from seal_repro.fewshot.constrained import json_constraint

            made["c"] = json_constraint(sampler.model, sampler.tokenizer, se.json_format, se.learning_rates)
        return made.get("c")

    def call(batch: list[str], call_seed: int) -> list[dict]:
        args = dict(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=call_seed)
        if sampler.kind == "hf":  # fixed batches: the batch a sample shares changes its numerics
            args["batch_size"] = spec.evaluation.batch_size
        key = None if memo is None or model_fingerprint is None else key_of({
            "arc_samples": code_fingerprint(__name__), "model": model_fingerprint, "backend": sampler.kind,
            "model_spec": spec.model.model_dump(mode="json"), "prompts": batch, "decoding": se.decoding,
            "json_format": se.json_format if constrained else None, **args,
            **({"learning_rates": list(se.learning_rates)} if se.learning_rates is not None else {})})
        hit = memo.get(key) if key else None
        if hit:
            gens = hit["generations"]
        elif sampler.kind == "hf":
            gens = [g.__dict__ for g in generate_details(sampler.model, sampler.tokenizer, batch,
                                                         constraint=constraint(), **args)]
        else:
            gens = sampler.generate(batch, **args)
        if key and not hit:
            memo.put(key, {"generations": gens})
        return gens

    rows = []
    for i in tqdm(range(n), desc="self-edits", unit="sample", dynamic_ncols=True):
        gens = call(prompts, seed + 1000 * i)
        tries = [1] * len(tasks)
        for t in range(1, max_tries):
            todo = [j for j, g in enumerate(gens) if not valid(g["text"].strip()).ok]
            if not todo:
                break
            for j, g in zip(todo, call([prompts[j] for j in todo], seed + 1000 * i + RETRY_STRIDE * t)):
                gens[j], tries[j] = g, tries[j] + 1
        rows += [{"task_id": t.id, "index": i, "text": g["text"].strip(), "tokens": g["tokens"],
                  "truncated": g["truncated"], "tries": k} for t, g, k in zip(tasks, gens, tries)]
    rows.sort(key=lambda r: (r["task_id"], r["index"]))
    return rows


def read_self_edits(folder: str | Path) -> dict[str, list[str]]:
    """{task id: self-edit texts in sample order} from a self_edits.jsonl."""
    out: dict[str, list[str]] = {}
    for row in sorted(read_jsonl(Path(folder) / SELF_EDITS), key=lambda r: (r["task_id"], r["index"])):
        out.setdefault(row["task_id"], []).append(row["text"])
    return out
