"""The inner-loop engine: one PEFT-wrapped model reused for every round.

Why not a fresh `Trainer` + `get_peft_model` per round (as the reference code does): for rounds of a
few dozen short sequences the framework set-up costs more than the training itself. Here the model is
wrapped once; each round resets the LoRA weights in place (seeded), builds a fresh AdamW, and trains on
packed rows (seal_repro/batching.py). The base weights are frozen and never touched, so nothing
accumulates across rounds (tests check the base weights' checksum).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from seal_repro import batching
from seal_repro.multilora import SlotBank, pad_rows, routed_lora_forward, slot_losses
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.training import TrainingSpec


@dataclass(frozen=True)
class TrainExample:
    """One training sequence: `prompt` gets no loss when `mask_prompt` is set; EOS is appended."""

    completion: str
    prompt: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """What `LoraEngine.train` needs, built only by `train_config` from a spec's training settings."""

    epochs: int
    lr: float
    batch_size: int
    grad_accum: int
    weight_decay: float
    lr_schedule: Literal["constant", "linear", "cosine"]
    warmup_steps: int
    warmup_ratio: float
    max_grad_norm: float | None
    max_steps: int | None
    max_seq_len: int
    pad_to_max_len: bool  # reference-compatible: pad with EOS to max_seq_len, loss on the padding
    packing: bool  # a batch's sequences end to end in rows (seal_repro/batching.py); else padded rows
    mask_prompt: bool
    gradient_checkpointing: bool  # recompute each layer's activations in the backward (transformers, non-reentrant)
    micro_batch_size: int | None  # sequences per forward/backward within a batch; None: all, halved on OOM
    optimizer: Literal["adamw"] = "adamw"

    def warmup_for(self, total_steps: int) -> int:
        return self.warmup_steps or math.ceil(self.warmup_ratio * total_steps)


def train_config(settings: TrainingSpec, *, mask_prompt: bool = False, **overrides) -> TrainConfig:
    """The engine's config from a spec's training settings (spec/training.py): the one place the two meet.

    `mask_prompt`: no loss on a TrainExample's prompt (the policy's SFT; ARC's loss on the output grid only).
    `overrides`: values a run decides itself (an ARC self-edit's learning rate and epochs)."""
    unknown = set(overrides) - set(TrainingSpec.model_fields)
    if unknown:
        raise TypeError(f"train_config: unknown training settings {sorted(unknown)}")
    values = {name: getattr(settings, name) for name in TrainingSpec.model_fields}
    values.update(overrides)
    return TrainConfig(
        epochs=values["epochs"], lr=values["lr"], batch_size=values["batch_size"], grad_accum=values["grad_accum"],
        weight_decay=values["weight_decay"], lr_schedule=values["lr_schedule"], warmup_steps=values["warmup_steps"],
        warmup_ratio=values["warmup_ratio"], max_grad_norm=values["max_grad_norm"], max_steps=values["max_steps"],
        max_seq_len=values["max_seq_len"], pad_to_max_len=values["pad_to_max_len"], packing=values["packing"],
        mask_prompt=mask_prompt, gradient_checkpointing=values["gradient_checkpointing"],
        micro_batch_size=values["micro_batch_size"], optimizer=values["optimizer"],
    )


@dataclass
class TrainStats:
    steps: int = 0
    real_tokens: int = 0  # non-padding tokens seen (what FLOP/s accounting counts)
    slot_tokens: int = 0  # tokens computed, padding included
    packed: bool = False  # whether the steps used the packed layout
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def render_prompt(tokenizer, text: str, chat_template: bool) -> str:
    """Wrap a user message in the tokenizer's chat template, or return it unchanged."""
    if not chat_template:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LoraEngine:
    # On an out-of-memory error midway through an accumulated step, the gradients so far can be restored from a
    # copy taken before each batch: cheap for LoRA factors, a second gradient's worth of memory for full weights.
    _snapshot_grads = True

    def __init__(self, model, tokenizer, lora: LoraSpec, adapter_name: str = "default", lora_dtype: str | None = None):
        """`lora_dtype`: the LoRA factors' dtype (float32, bfloat16, float16, or model: the weights' own); None:
        the spec's model.lora_dtype, which models.load records on the model (float32 if it did not load it)."""
        from peft import LoraConfig, get_peft_model
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora import Linear as PeftLinear

        from seal_repro.models import LORA_DTYPE_ATTR

        for p in model.parameters():
            p.requires_grad_(False)
        config = LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM",
        )
        self.tokenizer = tokenizer
        self.adapter_name = adapter_name
        # The factors' dtype is set below, on purpose, rather than by PEFT's autocast_adapter_dtype rule.
        self.peft_model = get_peft_model(model, config, adapter_name=adapter_name, autocast_adapter_dtype=False)
        self.base_model = self.peft_model.get_base_model()  # LoRA layers injected; a PreTrainedModel
        self._lora_layers = [m for m in self.peft_model.modules() if isinstance(m, LoraLayer)]
        self.lora_dtype = lora_dtype or getattr(model, LORA_DTYPE_ATTR, "float32")
        for layer in self._lora_layers:
            # In place (the same Parameter objects): the factors in the chosen dtype, or in their base layer's.
            dtype = DTYPES.get(self.lora_dtype) or layer.get_base_layer().weight.dtype
            if adapter_name in layer.lora_A:  # a linear layer's factors (an embedding's are lora_embedding_*)
                layer.lora_A[adapter_name].to(dtype)
                layer.lora_B[adapter_name].to(dtype)
            if isinstance(layer, PeftLinear):
                layer.forward = types.MethodType(_fused_lora_forward, layer)
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad]
        self._bind_device(model)
        self.peft_model.eval()

    def _bind_device(self, model) -> None:
        """Device and dtype of the model's weights; packing not yet checked (see packing_supported); no batch
        yet known not to fit (see micro_batches)."""
        first = next(model.parameters())
        self.device, self._dtype = first.device, first.dtype
        self._packing_ok: bool | None = None
        self._fit_sequences: int | None = None  # automatic micro-batching: the most sequences a pass holds
        self._checkpointing = False

    # -- rounds -------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Fresh adapter weights in place: A ~ kaiming-uniform (seeded), B = 0, so the model equals the base."""
        torch.manual_seed(seed)
        for layer in self._lora_layers:
            layer.reset_lora_parameters(self.adapter_name, True)

    def _encode(self, ex: TrainExample, cfg: TrainConfig) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        p_ids = tok(ex.prompt, add_special_tokens=False)["input_ids"] if ex.prompt else []
        c_ids = tok(ex.completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (p_ids + c_ids)[: cfg.max_seq_len]
        labels = ([-100] * len(p_ids) if cfg.mask_prompt else list(p_ids)) + list(c_ids)
        return ids, labels[: cfg.max_seq_len]

    def _collate(self, batch: list[tuple[list[int], list[int]]], cfg: TrainConfig, packed: bool = False,
                 to_device: bool = True) -> dict:
        """The step's model inputs for one batch, in the packed or the padded layout (on the device)."""
        tok = self.tokenizer
        if packed:
            enc = batching.collate_packed(batch, tok.pad_token_id)
        elif cfg.pad_to_max_len:
            enc = batching.collate_padded(batch, tok.pad_token_id, width=cfg.max_seq_len, loss_on_padding_id=tok.eos_token_id)
        else:
            enc = batching.collate_padded(batch, tok.pad_token_id)
        return {k: v.to(self.device) for k, v in enc.items()} if to_device else enc

    def uses_packing(self, cfg: TrainConfig) -> bool:
        """Whether training with `cfg` lays batches out packed (else padded rows)."""
        return cfg.packing and not cfg.pad_to_max_len and cfg.batch_size > 1 and self.packing_supported()

    @staticmethod
    def step_plan(encoded: Sequence, cfg: TrainConfig, seed: int, packed: bool) -> tuple[list[list[int]], int]:
        """(every micro-batch of the run, as indices into `encoded`, in order; the optimizer steps it takes). The
        whole schedule up front: the step count (for the lr schedule) follows from the batches drawn."""
        gen = torch.Generator().manual_seed(seed)
        if packed:
            plan = [batching.random_batches(len(encoded), cfg.batch_size, gen) for _ in range(cfg.epochs)]
        else:
            plan = [batching.length_grouped_batches(encoded, cfg.batch_size, gen, bound_padding=not cfg.pad_to_max_len)
                    for _ in range(cfg.epochs)]
        micro = [idx for epoch in plan for idx in epoch]
        total = math.ceil(len(micro) / cfg.grad_accum)
        return micro, total if cfg.max_steps is None else min(total, cfg.max_steps)

    def fusable_layers(self) -> list:
        """The adapted layers whose forward `_fused_lora_forward` computes (PEFT's plain LoRA Linear)."""
        from peft.tuners.lora import Linear as PeftLinear

        return [layer for layer in self._lora_layers if isinstance(layer, PeftLinear)]

    def packing_supported(self) -> bool:
        """Whether this model confines attention to each sequence of a packed row (checked once, on two short
        sequences: packed logits must equal the separately computed ones). transformers' own models read
        restarting position_ids that way; a model that does not is trained on padded rows instead."""
        if self._packing_ok is None:
            ids = self.tokenizer("The capital of the country is", add_special_tokens=False)["input_ids"]
            a = (ids * 6)[:6]
            seqs = [a, a[::-1][:4]]
            enc = {k: v.to(self.device) for k, v in batching.collate_packed([(s, s) for s in seqs], 0).items()}
            with torch.no_grad():
                packed = self.peft_model(input_ids=enc["input_ids"], position_ids=enc["position_ids"],
                                         use_cache=False).logits[0].float()
                alone = torch.cat([self.peft_model(input_ids=torch.tensor([s], device=self.device),
                                                   use_cache=False).logits[0].float() for s in seqs])
            # Rows are laid out longest first (pack_rows), which is the order of `seqs` here.
            tol = 1e-3 if self._dtype == torch.float32 else 3e-2  # half precision rounds the two paths apart
            self._packing_ok = bool((packed - alone).abs().max() <= tol * max(1.0, float(alone.abs().max())))
            if not self._packing_ok:
                logging.getLogger(__name__).warning(
                    "this model does not confine attention to each packed sequence; training on padded rows")
        return self._packing_ok

    # -- fitting a batch in memory ----------------------------------------------------------------
    def _compute(self):
        """The context every training forward runs in (FullEngine: autocast over float32 master weights)."""
        return contextlib.nullcontext()

    def set_checkpointing(self, on: bool) -> None:
        """Gradient checkpointing on or off (transformers' own, non-reentrant: it needs no input that requires
        grad, and recomputes the same values, so losses and gradients do not change). Only a training forward
        recomputes; generation is unaffected either way."""
        if on == self._checkpointing:
            return
        model = self.base_model
        if on:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it")
            # transformers 5 renamed it activation checkpointing; the first argument is the checkpoint kwargs in both
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        else:
            disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            disable()
        self._checkpointing = on

    def micro_batch_size(self, n: int, cfg: TrainConfig) -> int:
        """Sequences per forward/backward pass for a batch of `n`: the spec's micro_batch_size, else the whole batch
        until a pass ran out of memory, then the size found to fit (remembered by the engine)."""
        size = cfg.micro_batch_size or self._fit_sequences or n
        return max(1, min(n, size))

    def _fitted(self, n: int, cfg: TrainConfig, params: Sequence[torch.Tensor], run):
        """`run(size)` (forward and backward over a batch of `n` sequences, `size` at a time), retried at half the
        size whenever it runs out of accelerator memory and micro_batch_size is automatic. The gradients of
        `params` are put back as they were before each retry (the failed pass may have added to some of them)."""
        while True:
            size = self.micro_batch_size(n, cfg)
            mid_step = any(p.grad is not None for p in params)
            saved = [None if p.grad is None else p.grad.clone() for p in params] \
                if mid_step and cfg.micro_batch_size is None and size > 1 and self._snapshot_grads else None
            try:
                return run(size)
            except torch.OutOfMemoryError:
                if cfg.micro_batch_size is not None or size == 1:
                    raise
                if mid_step and saved is None:
                    raise torch.OutOfMemoryError(
                        f"out of memory in the middle of an accumulated step ({size} sequences a pass); set the "
                        "training section's micro_batch_size (or gradient_checkpointing) explicitly") from None
            # Out of the except block, the failed pass's tensors are released before the retry.
            for p, g in zip(params, saved or [None] * len(params)):
                p.grad = g
            self._fit_sequences = size // 2
            logging.getLogger(__name__).warning(
                "out of memory at %d sequences a pass: trying %d (micro_batch_size: null)", size, size // 2)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @staticmethod
    def _targets(labels: torch.Tensor) -> torch.Tensor:
        """Each row's number of loss targets: the labels after the one-token shift that are not -100."""
        return (labels[:, 1:] != -100).sum(1)

    # -- training -------------------------------------------------------------------------------
    def train(self, examples: Sequence[TrainExample], cfg: TrainConfig, seed: int) -> TrainStats:
        from transformers import get_scheduler

        stats = TrainStats()
        if not examples:
            return stats
        t0 = time.perf_counter()
        encoded = [self._encode(ex, cfg) for ex in examples]
        packed = stats.packed = self.uses_packing(cfg)
        plan, total = self.step_plan(encoded, cfg, seed, packed)
        # The fused AdamW kernel: one pass over every adapter tensor instead of a Python loop over the 2 x
        # (layers x target modules) of them (on a CPU the loop cost ~5% of a short round's training time).
        fused = self.device.type in ("cpu", "cuda")
        opt = torch.optim.AdamW(self.trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_for(total), num_training_steps=total)

        def step() -> None:
            if cfg.max_grad_norm is not None:  # as the HF Trainer: the global L2 norm over every trained tensor
                torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            stats.steps += 1

        def backward(batch, size: int) -> tuple[torch.Tensor, int]:
            """(the batch's loss — the mean over its target tokens —, the tokens computed), its gradient added to
            the trained weights', in passes of `size` sequences: each pass's mean loss weighted by its share of the
            batch's targets, so the gradients add up to the whole batch's."""
            parts = [self._collate(batch[i : i + size], cfg, packed, to_device=False) for i in range(0, len(batch), size)]
            counts = [int(self._targets(enc["labels"]).sum()) for enc in parts]
            loss, computed = torch.zeros((), device=self.device), 0
            for enc, count in zip(parts, counts):
                if len(parts) > 1 and count == 0:
                    continue  # no targets: no gradient (and its mean loss would be 0/0)
                with self._compute():
                    out = self.peft_model(**{k: v.to(self.device) for k, v in enc.items()}, use_cache=False)
                part = out.loss if len(parts) == 1 else out.loss * (count / sum(counts))
                (part / cfg.grad_accum).backward()
                loss = loss + part.detach().float()
                computed += enc["input_ids"].numel()
            return loss, computed

        self.set_checkpointing(cfg.gradient_checkpointing)
        self.peft_model.train()
        micro = 0
        losses: list[torch.Tensor] = []  # read once at the end: a per-step float() would sync the GPU every step
        try:
            for idx in plan:
                batch = [encoded[i] for i in idx]
                loss, computed = self._fitted(len(batch), cfg, self.trainable, lambda size: backward(batch, size))
                losses.append(loss)
                stats.real_tokens += sum(len(ids) for ids, _ in batch)
                stats.slot_tokens += computed
                micro += 1
                if micro % cfg.grad_accum == 0:
                    step()
                    if stats.steps >= total:
                        return stats
            if micro % cfg.grad_accum:
                step()
            return stats
        finally:
            self.peft_model.eval()
            stats.losses = torch.stack(losses).float().cpu().tolist() if losses else []
            stats.seconds = time.perf_counter() - t0

    def train_many(self, jobs: Sequence[tuple[Sequence[TrainExample], int]], cfg: TrainConfig
                   ) -> tuple[SlotBank, list[TrainStats]]:
        """Train one adapter per (examples, seed) job, all at once (seal_repro/multilora.py): every step is one
        forward/backward over the rows of every job still training, each row through its own job's adapter, and
        each adapter follows exactly the steps, schedule and clipping `train` gives it alone. Returns the bank
        holding the trained adapters and each job's TrainStats (`seconds`: the batch's wall time shared out).
        Micro-batches (cfg.micro_batch_size, or automatic) cut a step's sequences of every job together."""
        from transformers import get_scheduler  # heavy: loaded with the first training

        t0 = time.perf_counter()
        n = len(jobs)
        bank = SlotBank(self, n)
        stats = [TrainStats() for _ in range(n)]
        plans, encoded, opts, scheds, ends = [], [], [], [], []
        fused = self.device.type in ("cpu", "cuda")
        packed = self.uses_packing(cfg)
        for b, (examples, seed) in enumerate(jobs):
            self.reset(seed)
            bank.capture(b)
            enc = [self._encode(ex, cfg) for ex in examples]
            micro, total = self.step_plan(enc, cfg, seed, packed)
            encoded.append(enc)
            plans.append(micro)
            ends.append(min(len(micro), total * cfg.grad_accum))  # the micro-batches `train` would run
            opt = torch.optim.AdamW(bank.params(b), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
            opts.append(opt)
            scheds.append(get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_for(total),
                                        num_training_steps=total))
            stats[b].packed = packed
        params = [p for b in range(n) for p in bank.params(b)]

        def backward(items: list[tuple[int, batching.Encoded]], size: int) -> tuple[torch.Tensor, list[int]]:
            """(every slot's loss on this step's (slot, sequence) items, the tokens computed for each slot), in passes
            of `size` items; a pass's loss per slot is its target-token sum over the slot's targets in the whole
            step, so the passes add up to the one-pass loss and gradients."""
            passes, computed = [], [0] * n
            for i in range(0, len(items), size):
                chunk = items[i : i + size]
                parts, rows = [], []
                for b in dict.fromkeys(b for b, _ in chunk):  # each slot's sequences collated alone, as `train` does
                    enc = self._collate([e for s, e in chunk if s == b], cfg, packed, to_device=False)
                    parts.append(enc)
                    rows += [b] * enc["input_ids"].shape[0]
                    computed[b] += enc["input_ids"].numel()
                width = max(p["input_ids"].shape[1] for p in parts)
                step_in = {k: torch.cat([pad_rows(p, width, self.tokenizer.pad_token_id)[k] for p in parts])
                           for k in parts[0]}
                rows_t = torch.tensor(rows)
                counts = torch.zeros(n).index_add_(0, rows_t, self._targets(step_in["labels"]).float())
                passes.append((step_in, rows_t, counts))
            totals = sum(c for _, _, c in passes)
            active = sorted({b for b, _ in items})
            loss = torch.zeros(n, device=self.device)
            for step_in, rows_t, counts in passes:
                labels = step_in.pop("labels").to(self.device)
                row_slots = rows_t.to(self.device)
                # The backward inside the routed block: gradient checkpointing recomputes the forward there.
                with bank.routed(row_slots):
                    with self._compute():
                        logits = self.peft_model(**{k: v.to(self.device) for k, v in step_in.items()},
                                                 use_cache=False).logits
                    part = slot_losses(logits, labels, row_slots, n)
                    if len(passes) > 1:  # slot mean over this pass's targets -> its share of the step's mean
                        part = part * (counts / totals.clamp_min(1.0)).to(part.device, part.dtype)
                    (part[active].sum() / cfg.grad_accum).backward()
                loss = loss + part.detach().float()
            return loss, computed

        losses: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.set_checkpointing(cfg.gradient_checkpointing)
        self.peft_model.train()
        try:
            for m in range(max(ends, default=0)):
                active = [b for b in range(n) if m < ends[b]]
                items = [(b, encoded[b][i]) for b in active for i in plans[b][m]]
                loss, computed = self._fitted(len(items), cfg, params, lambda size: backward(items, size))
                for b in active:
                    stats[b].real_tokens += sum(len(encoded[b][i][0]) for i in plans[b][m])
                    stats[b].slot_tokens += computed[b]
                    losses[b].append(loss[b])
                    if (m + 1) % cfg.grad_accum == 0 or m + 1 == ends[b]:
                        if cfg.max_grad_norm is not None:  # each adapter clipped on its own norm, as alone
                            torch.nn.utils.clip_grad_norm_(bank.params(b), cfg.max_grad_norm)
                        opts[b].step()
                        scheds[b].step()
                        opts[b].zero_grad(set_to_none=True)
                        stats[b].steps += 1
            return bank, stats
        finally:
            self.peft_model.eval()
            seconds = time.perf_counter() - t0
            for b in range(n):
                stats[b].losses = torch.stack(losses[b]).float().cpu().tolist() if losses[b] else []
                stats[b].seconds = seconds / max(n, 1)

    # -- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
        batch_size: int = 16, seed: int = 0, stop: Sequence[str] = (), use_adapter: bool = True,
        bank: SlotBank | None = None, slots: Sequence[int] | None = None, strip_leading: bool = True,
    ) -> list[str]:
        """Batched, left-padded generation; `stop` strings cut the decoded text and end a batch early; with
        `bank`/`slots`, prompt i answered by the bank's adapter slots[i] (see generate_details)."""
        return generate(
            self.peft_model if use_adapter else self.base_model, self.tokenizer, prompts,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size,
            seed=seed, stop=stop, disable_adapter=None if use_adapter else self.peft_model, bank=bank, slots=slots,
            strip_leading=strip_leading,
        )

    @torch.no_grad()
    def logits_differ_from_base(self, text: str = "The capital of the country is", atol: float = 1e-6) -> bool:
        """Probe that an adapter really changes the model (issue: a silently unapplied adapter scores as base)."""
        enc = self.tokenizer(text, return_tensors="pt").to(self.device)
        adapted = self.peft_model(**enc).logits
        with self.peft_model.disable_adapter():
            base = self.peft_model(**enc).logits
        return not torch.allclose(adapted, base, atol=atol)

    def save_adapter(self, path) -> None:
        """A standard PEFT adapter folder, byte-for-byte the same for the same weights: PEFT writes
        target_modules from a set, in an order that changes with each process's string hashing, which would
        change the folder's hash (DVC re-runs everything downstream) and every memo key naming the adapter.
        The folder appears whole or not at all: written beside `path`, then renamed into place (a kill or a full
        disk midway leaves no half-written adapter that a later run would trust)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
        try:
            self.peft_model.save_pretrained(str(tmp))
            config = tmp / "adapter_config.json"
            data = json.loads(config.read_text(encoding="utf-8"))
            if isinstance(data.get("target_modules"), list):
                data["target_modules"] = sorted(data["target_modules"])
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            if path.exists():
                shutil.rmtree(path)
            os.rename(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _fused_lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """PEFT's LoRA `Linear.forward` for the plain case — one active adapter, no dropout, not merged, no variant,
    inputs in the adapter's dtype — as two matmuls and one `addmm`: W x + s·B(A x) with the scaling s and the sum
    inside the `addmm`. PEFT computes `result + lora_B(lora_A(x)) * scaling`, which writes two more activation-
    sized tensors per layer (and reads them again in the backward); with 7 adapted layers per block on a CPU that
    cost ~5% of a training step. Why by hand: PEFT has no fused path for this. Every other case, and any call
    with arguments we do not know, goes to PEFT's own forward."""
    route = getattr(self, "_route", None)
    if route is not None and not (args or kwargs):  # rows routed to their own adapters (seal_repro/multilora.py)
        return routed_lora_forward(self, x, route)
    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    if (args or kwargs or self.disable_adapters or self.merged or name not in self.lora_A
            or name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity)
            or x.dtype != self.lora_A[name].weight.dtype or x.dtype != self.base_layer.weight.dtype
            or not isinstance(self.base_layer, torch.nn.Linear)):
        return type(self).forward(self, x, *args, **kwargs)
    flat = x.reshape(-1, x.shape[-1])
    weight, bias = self.base_layer.weight, self.base_layer.bias
    base = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())
    out = torch.addmm(base, flat @ self.lora_A[name].weight.t(), self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return out.view(*x.shape[:-1], out.shape[-1])


class _StopOnText:
    """A `generate` stopping criterion: a sequence is done once its new text, left-stripped, holds a stop string.

    Cutting happens after decoding anyway; this only stops a batch as soon as every answer in it is complete
    instead of running to `max_new_tokens`, so the returned texts are the same. Not transformers' own
    `stop_strings`: that stops on a leading newline too, which would end an answer before it starts.
    """

    def __init__(self, tokenizer, prompt_len: int, stop: Sequence[str], strip_leading: bool = True):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, [s for s in stop if s]
        self.strip_leading = strip_leading

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        done = [_cut_is_final(t.lstrip() if self.strip_leading else t, self.stop) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _cut_is_final(text: str, stop: Sequence[str]) -> bool:
    """True once `text` holds a stop string that no later token can move: no stop string that would start
    earlier is still being completed at the end of the text."""
    found = [text.index(s) for s in stop if s in text]
    if not found:
        return False
    first = min(found)
    return not any(t.startswith(text[k:]) for t in stop for k in range(max(0, len(text) - len(t) + 1), first))


MIN_SHARED_PREFIX = 16  # tokens: below this, computing a batch's shared prompt prefix once is not worth a call


def _shared_prefix_len(rows: list[list[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def _prefix_cache(model, prefix: list[int], batch: int, device, bank: SlotBank | None = None,
                  row_slots: Sequence[int] | None = None):
    """Run the shared prompt prefix once and copy its KV cache to every row: (generate's cache kwarg, cache).
    With `row_slots` (rows answered by different adapters of `bank`), once per distinct adapter.

    None when the model's forward cannot take it safely (no position_ids, or a cache that cannot be
    repeated per row); the caller then feeds the whole prompts as before.
    """
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    key = "cache" if "cache" in params else "past_key_values"  # transformers 5 renamed it
    if "position_ids" not in params or key not in params:
        return None
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    if row_slots is None:
        out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, **extra)
        cache = getattr(out, key, None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(batch)
        return key, cache
    distinct = sorted(set(row_slots))
    with bank.routed(distinct):
        out = model(input_ids=torch.tensor([prefix] * len(distinct), device=device), use_cache=True, **extra)
    cache = getattr(out, key, None)
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(torch.tensor([distinct.index(s) for s in row_slots], device=device))
    return key, cache


def _left_padded(rows: list[list[int]], pad_id: int, prefix: list[int], device):
    """[prefix | padding | row] for every row: the padding sits after the shared prefix, masked out; positions
    come from the attention mask, so each row's tokens keep the positions they have unpadded."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), len(prefix) + width), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    ids[:, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
    att[:, : len(prefix)] = 1
    for i, r in enumerate(rows):
        ids[i, ids.shape[1] - len(r) :] = torch.tensor(r, dtype=torch.long)
        att[i, ids.shape[1] - len(r) :] = 1
    return ids.to(device), att.to(device)


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int  # new tokens generated (up to the end of text, stop strings aside)
    truncated: bool  # stopped by max_new_tokens rather than by the end of the text or a stop string


def generate(model, tokenizer, prompts, **kwargs) -> list[str]:
    """Texts of `generate_details` (the same arguments)."""
    return [g.text for g in generate_details(model, tokenizer, prompts, **kwargs)]


@torch.inference_mode()
def generate_details(model, tokenizer, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, batch_size=16, seed=0,
                     stop=(), disable_adapter=None, bank: SlotBank | None = None, slots: Sequence[int] | None = None,
                     strip_leading: bool = True, constraint=None) -> list[Generation]:
    """Batched generation (left-padded; a shared prompt prefix prefilled once); sampled batches are seeded
    `seed + start` by their first prompt's position, so equal inputs give equal outputs.

    `bank` and `slots`: prompt i is answered by adapter `slots[i]` of the bank (seal_repro/multilora.py), many
    adapters in one batch. `strip_leading`: leading whitespace is not an answer, so it is dropped before the stop
    strings apply (False: the text as generated, as lm-eval's HF model cuts it). `constraint`: a callable returning a
    fresh transformers LogitsProcessor, called once per batch (grammar-constrained decoding keeps per-row state)."""
    import contextlib

    from transformers import LogitsProcessorList, StoppingCriteriaList

    device = next(model.parameters()).device
    ends = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    # Longest first keeps padding low inside each batch; results are put back in input order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    result: dict[int, Generation] = {}
    ctx = disable_adapter.disable_adapter() if disable_adapter is not None else contextlib.nullcontext()
    with ctx:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
            rows = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
            row_slots = None if slots is None else [slots[i] for i in idx]
            routed = contextlib.nullcontext() if row_slots is None else bank.routed(row_slots)
            shared = _shared_prefix_len(rows) if len(rows) > 1 else 0
            cached = _prefix_cache(model, rows[0][:shared], len(rows), device, bank, row_slots) \
                if shared >= MIN_SHARED_PREFIX else None
            if cached is not None:
                # Prompts that start alike (a few-shot answer prompt, k samples of one prompt): prefill the
                # common part once instead of once per row.
                ids, att = _left_padded([r[shared:] for r in rows], tokenizer.pad_token_id, rows[0][:shared], device)
                enc = {"input_ids": ids, "attention_mask": att}
                kwargs[cached[0]] = cached[1]
            else:
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(device)
            if temperature > 0:
                torch.manual_seed(seed + start)
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if constraint is not None:
                kwargs["logits_processor"] = LogitsProcessorList([constraint()])
            if any(stop):
                kwargs["stopping_criteria"] = StoppingCriteriaList(
                    [_StopOnText(tokenizer, enc["input_ids"].shape[1], stop, strip_leading)])
            # outlines' bitmask kernel is torch.compile'd: eager instead (no compiler toolchain needed, and its
            # inductor build let masked tokens through under the AVX2 pin of seal_repro/numerics.py)
            eager = torch.compiler.set_stance("force_eager") if constraint is not None else contextlib.nullcontext()
            with routed, eager:
                gen = model.generate(**enc, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new):
                ids = row.tolist()
                n = next((k for k, t in enumerate(ids) if t in ends), len(ids))
                text = tokenizer.decode(row, skip_special_tokens=True)
                text = text.lstrip() if strip_leading else text
                stopped = False
                for s in stop:
                    if s and s in text:
                        text, stopped = text[: text.index(s)], True
                result[i] = Generation(text, n, n >= max_new_tokens and not stopped)
    return [result[i] for i in range(len(prompts))]
