"""Self-edits a model writes for passages: the prompts, batched sampling, and the memo that keeps every batch.

Sampling is deterministic (seeded per batch), so a batch of samples is memoized under everything that decides
it: the model (and policy adapter), its dtype and device, the rendered prompts, the sampling settings, the
backend that samples (seal_repro/sampling.py: hf generate, with its batch size, or an OpenAI-compatible server),
seed and the code that samples. A stage re-run after a crash, or an ablation that does not touch sampling, reads
its self-edits back instead of generating them again (and, with a lazily loaded sampler, loads no model for them).

The sampling functions take a sampler (`sampling.open_sampler`) or, as before, a model and its tokenizer (Hugging
Face generate on that model).
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro.engine import Generation, generate_details, render_prompt
from seal_repro.knowledge.prompts import self_edit_prompt, uses_chat_template
from seal_repro.memo import Memo, key_of
from seal_repro.sampling import as_sampler

# Seed offsets of the self-edits sampled for each use; far apart, so no two uses share a seed.
CONTINUAL_SEED_OFFSET = 200_000
CONTINUAL_SEED_STRIDE = 1_000_003  # sequence s, step t: CONTINUAL_SEED_OFFSET + s * stride + t


def rl_seed_offset(iteration: int) -> int:
    """Seeds of ReST-EM iteration i's training samples; far from 0, which the evaluation self-edits use."""
    return 100_003 * iteration


def policy_prompt(spec, tokenizer, passage: Passage) -> str:
    return render_prompt(tokenizer, self_edit_prompt(spec.self_edit, passage.title, passage.context),
                         uses_chat_template(spec))


def _sample(sampler, spec, prompts: list[str], seed: int, memo: Memo | None,
            model_fingerprint: str | None) -> list[Generation]:
    s = spec.self_edit.sampling
    args = dict(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=seed)
    if sampler.kind == "hf":  # fixed batches: the batch a sample shares changes its numerics
        args["batch_size"] = spec.evaluation.batch_size
    key = None
    if memo is not None and model_fingerprint is not None:
        key = key_of({"samples": code_fingerprint(__name__), "model": model_fingerprint, "backend": sampler.kind,
                      "model_spec": spec.model.model_dump(mode="json"), "prompts": prompts, **args})
        hit = memo.get(key)
        if hit is not None:
            return [Generation(**g) for g in hit["generations"]]
    if sampler.kind == "hf":
        out = generate_details(sampler.model, sampler.tokenizer, prompts, **args)
    else:
        out = [Generation(**g) for g in sampler.generate(prompts, **args)]
    if key is not None:
        memo.put(key, {"generations": [g.__dict__ for g in out]})
    return out


def _row(passage_id: str, index: int, g: Generation) -> dict:
    return {"passage_id": passage_id, "index": index, "text": g.text.strip(), "tokens": g.tokens,
            "truncated": g.truncated}


def write_self_edits(model, tokenizer, spec, passages: Sequence[Passage], seed_offset: int = 0, *,
                     memo: Memo | None = None, model_fingerprint: str | None = None) -> list[dict]:
    """`self_edit.n` sampled self-edits per passage; rows {passage_id, index, text, tokens, truncated} ordered by
    (passage, index). Sample i of every passage comes from one batched call seeded `seed + offset + 1000 * i`, so
    every model writing for the same passages (base, each SEAL iteration) draws with the same seeds. `model`: a
    sampler (seal_repro/sampling.py; `tokenizer` unused) or a model."""
    sampler = as_sampler(model, tokenizer)
    prompts = [policy_prompt(spec, sampler.tokenizer, p) for p in passages]
    rows = []
    for i in tqdm(range(spec.self_edit.n), desc="self-edits", unit="sample", dynamic_ncols=True):
        gens = _sample(sampler, spec, prompts, spec.seed + seed_offset + 1000 * i, memo, model_fingerprint)
        rows += [_row(p.id, i, g) for p, g in zip(passages, gens)]
    rows.sort(key=lambda r: (r["passage_id"], r["index"]))
    return rows


def sample_k(model, tokenizer, spec, passages: Sequence[Passage], k: int, seed: int, *,
             memo: Memo | None = None, model_fingerprint: str | None = None) -> list[dict]:
    """`k` sampled self-edits per passage as rows like `write_self_edits`'s. All n·k prompts go through batched
    generation together (the k copies of a prompt draw different samples): on a CPU one batch of 9 costs about a
    third of three batches of 3. `model`: a sampler or a model, as for `write_self_edits`."""
    sampler = as_sampler(model, tokenizer)
    prompts = [policy_prompt(spec, sampler.tokenizer, p) for p in passages for _ in range(k)]
    gens = _sample(sampler, spec, prompts, seed, memo, model_fingerprint)
    return [_row(p.id, i, gens[j * k + i]) for j, p in enumerate(passages) for i in range(k)]


def by_passage(rows: Sequence[dict]) -> dict[str, list[str]]:
    """{passage id: self-edit texts in sample order}."""
    out: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: (r["passage_id"], r["index"])):
        out.setdefault(row["passage_id"], []).append(row["text"])
    return out
