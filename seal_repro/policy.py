"""Policies on disk, for both domains: a SEAL policy is a standard PEFT LoRA folder over the *base* model.

Iteration 1's policy is the trained LoRA itself. Iteration i >= 2 trains a fresh LoRA on the base with iteration
i-1 merged in (as the reference does), and saves the two *stacked*: one LoRA of rank r_prev + r whose update B·A
equals the sum of both updates (`stack_adapters`), so `PeftModel.from_pretrained(base, "…/iter2/policy")` is
iteration 2's policy, exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seal_repro import models
from seal_repro.errors import UserError
from seal_repro.memo import fingerprint_model_dir, key_of
from seal_repro.spec.loader import PICKLE_SUFFIXES

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _module(key: str) -> tuple[str, str]:
    module, _, rest = key.rpartition(".lora_")
    return module, rest.split(".")[0]  # ("…q_proj", "A" | "B")


def stack_adapters(prev: Path | None, new: Path, out: Path) -> None:
    """Write to `out` one LoRA whose update is prev's plus new's (both PEFT LoRA folders over the same weights).

    A LoRA adds scale·B·A; concatenating [A_prev; A_new] and [s_prev·B_prev, s_new·B_new] with scale 1 adds
    exactly both updates. A module only one side adapts gets zero blocks on the other side.
    Why not PEFT's `add_weighted_adapter(..., combination_type="cat")`, which computes the same sum: it needs both
    adapters loaded onto a model in memory (on a GPU, another copy of the base model), and works in the adapters'
    dtype; this is a file-to-file operation in float32.
    """

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


def require_safetensors_adapter(policy_dir: Path) -> None:
    """Refuse (one-line UserError) an adapter folder without adapter_model.safetensors: PEFT would otherwise fall back
    to unpickling adapter_model.bin, which can run code."""
    if not (Path(policy_dir) / ADAPTER_WEIGHTS).is_file():
        pickled = sorted(p.name for p in Path(policy_dir).glob("*") if p.name.endswith(PICKLE_SUFFIXES))
        why = f"holds only pickle weights ({', '.join(pickled)}), which are never loaded" if pickled else "is missing"
        raise UserError(f"policy: {Path(policy_dir) / ADAPTER_WEIGHTS} {why}; adapters are read from safetensors only")


def load_policy(spec, model_dir: Path, policy_dir: Path | None):
    """(model, tokenizer): the base model with the policy adapter merged into its weights (None: the base).
    Both are read from safetensors only (models.load, require_safetensors_adapter)."""
    if policy_dir is not None:
        require_safetensors_adapter(policy_dir)  # before the base model loads: a refusal costs nothing
    model, tok = models.load(spec.model, Path(model_dir))
    if policy_dir is not None:
        from peft import PeftModel  # heavy: imported when a policy is loaded

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
