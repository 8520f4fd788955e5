"""ReST-EM for knowledge incorporation (SEAL's outer loop), the pieces of one iteration.

An iteration: the current policy samples `rl.k` self-edits per training passage; each self-edit becomes
`rl.repeats` inner-loop rounds on the policy model itself (the reference's TTT server adapts the RL
checkpoint, not the original base); its reward is the mean adapted accuracy, or that minus the baseline's
(`rl.baseline`); `rl.keep` picks the self-edits the policy is fine-tuned on, with loss on the self-edit only.

Policies on disk are standard PEFT LoRA folders over the *base* model. Iteration 1's is the trained LoRA
itself. Iteration i >= 2 trains a fresh LoRA on the base with iteration i-1 merged in (as the reference does),
and saves the two *stacked*: one LoRA of rank r_prev + r whose update B·A equals the sum of both updates
(`stack_adapters`), so `PeftModel.from_pretrained(base, "…/iter2/policy")` is iteration 2's policy, exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from seal_repro.data.records import Passage
from seal_repro.engine import TrainConfig, TrainExample, generate, render_prompt
from seal_repro.knowledge.inner_loop import Round, plan_rounds
from seal_repro.knowledge.prompts import self_edit_prompt, uses_chat_template
from seal_repro.memo import fingerprint_model_dir, key_of

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
SAMPLE_CONDITION, BASELINE_CONDITION = "rl_sample", "rl_baseline"


def sample_seed_offset(iteration: int) -> int:
    """Seeds of iteration i's training samples; far from 0, which the evaluation self-edits use."""
    return 100_003 * iteration


def sample_self_edits(model, tokenizer, spec, passages: Sequence[Passage], k: int, seed: int) -> list[dict]:
    """`k` sampled self-edits per passage as rows {passage_id, index, text}, ordered by (passage, index).

    All n·k prompts go through batched generation together (the k copies of a prompt draw different
    samples): on a CPU one batch of 9 costs about a third of three batches of 3.
    """
    s = spec.self_edit.sampling
    prompts = [policy_prompt(spec, tokenizer, p) for p in passages for _ in range(k)]
    texts = generate(model, tokenizer, prompts, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                     top_p=s.top_p, batch_size=spec.evaluation.batch_size, seed=seed)
    return [{"passage_id": p.id, "index": i, "text": texts[j * k + i].strip()}
            for j, p in enumerate(passages) for i in range(k)]


def with_self_edits(spec, n: int):
    return spec.model_copy(update={"self_edit": spec.self_edit.model_copy(update={"n": n})})


def with_repeats(spec, repeats: int):
    return spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"repeats": repeats})})


# -- rewards ------------------------------------------------------------------------------------------------
def rl_rounds(passages: Sequence[Passage], samples: dict[str, list[str]], spec, rl) -> list[Round]:
    """`rl.repeats` rounds per sampled self-edit, then the baseline's rounds for each passage."""
    s = with_repeats(spec, rl.repeats)
    rounds = [replace(r, condition=SAMPLE_CONDITION) for r in plan_rounds("base_synthetic", passages, samples, s)]
    return rounds + [replace(r, condition=BASELINE_CONDITION) for r in plan_rounds(rl.baseline, passages, {}, s)]


def _mean(values) -> float:
    graded = [float(v) for v in values if v is not None]  # None: ungraded (judge failure), never wrong
    return sum(graded) / len(graded) if graded else math.nan


def score_samples(records: list[dict], rl) -> list[dict]:
    """One row per sampled self-edit: its mean accuracy over questions x repeats, the baseline's, the reward."""
    baseline: dict[str, list] = defaultdict(list)
    samples: dict[tuple[str, int], list] = defaultdict(list)
    for r in records:
        if r["condition"] == BASELINE_CONDITION:
            baseline[r["passage_id"]].append(r["correct"])
        else:
            samples[(r["passage_id"], r["self_edit_index"])].append(r["correct"])
    rows = []
    for (pid, index), correct in samples.items():
        acc, base = _mean(correct), _mean(baseline[pid])
        rows.append({
            "passage_id": pid, "index": index, "accuracy": acc, "baseline": base,
            "reward": acc if rl.reward == "accuracy" else acc - base, "beats_baseline": acc > base,
        })
    rows.sort(key=lambda r: (r["passage_id"], r["index"]))
    return rows


def keep_rows(rows: list[dict], rl) -> list[dict]:
    """The self-edits the policy is fine-tuned on; ties go to the earlier sample, unscored ones never count."""
    if rl.keep == "beats_baseline":
        return [r for r in rows if r["beats_baseline"]]
    m = 1 if rl.keep == "best1" else rl.top_m
    by_passage: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if not math.isnan(r["reward"]):
            by_passage[r["passage_id"]].append(r)
    kept = []
    for pid in sorted(by_passage):
        kept += sorted(by_passage[pid], key=lambda r: (-r["reward"], r["index"]))[:m]
    return sorted(kept, key=lambda r: (r["passage_id"], r["index"]))


def iteration_metrics(rows: list[dict], kept: list[dict], lengths: list[int]) -> dict:
    scored = [r for r in rows if not math.isnan(r["reward"])]
    return {
        "sampled": len(rows), "kept": len(kept),
        "mean_reward": _mean(r["reward"] for r in scored),
        "mean_accuracy": _mean(r["accuracy"] for r in scored),
        "mean_baseline": _mean(r["baseline"] for r in scored),
        "share_beating_baseline": _mean(float(r["beats_baseline"]) for r in scored),
        "mean_self_edit_tokens": _mean(lengths),
    }


# -- policy fine-tuning --------------------------------------------------------------------------------------
def policy_prompt(spec, tokenizer, passage: Passage) -> str:
    return render_prompt(tokenizer, self_edit_prompt(spec.self_edit, passage.title, passage.context),
                         uses_chat_template(spec))


def sft_examples(kept: list[dict], texts: dict[tuple[str, int], str], passages: dict[str, Passage], spec,
                 tokenizer) -> list[TrainExample]:
    """(self-edit prompt -> kept self-edit) pairs; an empty self-edit teaches nothing and is skipped."""
    out = []
    for r in kept:
        text = texts[(r["passage_id"], r["index"])]
        if text.strip():
            out.append(TrainExample(completion=text, prompt=policy_prompt(spec, tokenizer, passages[r["passage_id"]])))
    return out


def sft_config(rl) -> TrainConfig:
    sft = rl.sft
    return TrainConfig(epochs=sft.epochs, lr=sft.lr, batch_size=sft.batch_size, grad_accum=sft.grad_accum,
                       lr_schedule=sft.lr_schedule, warmup_steps=sft.warmup_steps, mask_prompt=True,
                       max_seq_len=sft.max_seq_len)


# -- policies on disk -----------------------------------------------------------------------------------------
def _module(key: str) -> tuple[str, str]:
    module, _, rest = key.rpartition(".lora_")
    return module, rest.split(".")[0]  # ("…q_proj", "A" | "B")


def stack_adapters(prev: Path | None, new: Path, out: Path) -> None:
    """Write to `out` one LoRA whose update is prev's plus new's (both PEFT LoRA folders over the same weights).

    A LoRA adds scale·B·A; concatenating [A_prev; A_new] and [s_prev·B_prev, s_new·B_new] with scale 1 adds
    exactly both updates. A module only one side adapts gets zero blocks on the other side.
    """
    import torch
    from safetensors.torch import load_file, save_file

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    if prev is None:
        shutil.copytree(new, out)
        return
    cfgs = [json.loads((Path(d) / ADAPTER_CONFIG).read_text()) for d in (prev, new)]
    weights = [load_file(str(Path(d) / ADAPTER_WEIGHTS)) for d in (prev, new)]
    if any(c.get("use_rslora") or c.get("use_dora") or c.get("rank_pattern") or c.get("alpha_pattern") for c in cfgs):
        raise ValueError("stack_adapters handles plain LoRA adapters only (no rslora/dora/rank patterns)")
    ranks = [c["r"] for c in cfgs]
    scales = [c["lora_alpha"] / c["r"] for c in cfgs]
    modules = sorted({_module(k)[0] for w in weights for k in w})
    dtype = next(iter(weights[1].values())).dtype
    stacked = {}
    for m in modules:
        a_parts, b_parts = [], []
        pairs = [(w.get(f"{m}.lora_A.weight"), w.get(f"{m}.lora_B.weight")) for w in weights]
        d_in = next(a.shape[1] for a, _ in pairs if a is not None)
        d_out = next(b.shape[0] for _, b in pairs if b is not None)
        for (a, b), r, s in zip(pairs, ranks, scales):
            a_parts.append(torch.zeros(r, d_in) if a is None else a.float())
            b_parts.append(torch.zeros(d_out, r) if b is None else b.float() * s)
        stacked[f"{m}.lora_A.weight"] = torch.cat(a_parts, 0).to(dtype).contiguous()
        stacked[f"{m}.lora_B.weight"] = torch.cat(b_parts, 1).to(dtype).contiguous()
    out.mkdir(parents=True)
    targets = set()
    for c in cfgs:
        t = c.get("target_modules") or []
        targets |= {t} if isinstance(t, str) else set(t)
    total = sum(ranks)
    cfg = {**cfgs[1], "r": total, "lora_alpha": total, "target_modules": sorted(targets)}
    (out / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file(stacked, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    for extra in Path(new).iterdir():  # e.g. README.md written by PEFT
        if extra.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) and extra.is_file():
            shutil.copy(extra, out / extra.name)


def load_policy(spec, model_dir: Path, policy_dir: Path | None):
    """(model, tokenizer): the base model with the policy adapter merged into its weights (None: the base)."""
    from seal_repro import models

    model, tok = models.load(spec.model, Path(model_dir))
    if policy_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(policy_dir)).merge_and_unload()
        model.eval()
    return model, tok


def policy_fingerprint(model_dir: Path, policy_dir: Path | None) -> str:
    """Memo key part for 'this policy model': the base folder's fingerprint, plus the adapter's bytes."""
    base = fingerprint_model_dir(model_dir)
    if policy_dir is None:
        return base
    h = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        h.update((Path(policy_dir) / name).read_bytes())
    return key_of({"base": base, "policy": h.hexdigest()})
