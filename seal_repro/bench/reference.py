"""The reference protocol's inner-loop round, re-implemented here (our code) as the benchmark's baseline.

One round, as the SEAL reference runs it for knowledge incorporation:

1. wrap the base model in a NEW LoRA model with `peft.get_peft_model` (same rank / alpha / dropout / target
   modules as the engine; the adapter's initial weights seeded with the round's seed, as the engine seeds them);
2. tokenize every training sequence with `truncation=True, max_length=2048, padding="max_length"` (right padding
   with the pad token, which is EOS for these models); labels are a copy of the padded ids, so the padding
   carries loss, and the attention mask is zero on it;
3. train with a NEW `transformers.Trainer` at batch size 1 — same epochs, lr, schedule, warm-up, weight decay,
   gradient accumulation and seed as the engine; no evaluation, no checkpoints, no reporting; everything else
   is the Trainer's default (e.g. gradient clipping at 1.0 and its default AdamW);
4. answer the questions ONE AT A TIME with greedy `generate` (same answer prompt and token budget as the engine),
   each answer cut at its first newline, as the lm-eval task's `until: ["\\n"]` cuts the engine's;
5. `unload()` the adapter, which leaves the base model exactly as it was for the next round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from seal_repro.engine import TrainConfig, render_prompt
from seal_repro.spec.inner_loop import LoraSpec

REFERENCE_MAX_LENGTH = 2048


@dataclass
class ReferenceRound:
    predictions: list[str]
    steps: int  # optimizer steps the Trainer took
    trained_tokens: int  # tokens in every batch the Trainer trained on, padding included
    real_tokens: int  # the non-padding ones among them
    train_seconds: float  # Trainer construction + trainer.train()
    final_loss: float = float("nan")  # the Trainer's last logged step loss (over padding too: labels = every id)


class ReferenceInnerLoop:
    """Runs reference rounds on `model` (a plain, unwrapped causal LM), leaving it unchanged after each."""

    def __init__(self, model, tokenizer, lora: LoraSpec, cfg: TrainConfig, *, answer_prompt: str,
                 max_new_tokens: int, chat_template: bool, work_dir: str | Path,
                 max_length: int = REFERENCE_MAX_LENGTH):
        self.model = model
        self.tokenizer = tokenizer
        self.lora = lora
        self.cfg = cfg
        self.answer_prompt = answer_prompt
        self.max_new_tokens = max_new_tokens
        self.chat_template = chat_template
        self.work_dir = Path(work_dir)
        self.max_length = max_length
        self.trainers_built = 0
        self.wrappers_built = 0

    def _dataset(self, sequences: Sequence[str]):
        from datasets import Dataset

        enc = self.tokenizer(list(sequences), truncation=True, max_length=self.max_length, padding="max_length",
                             padding_side="right")
        rows = [{"input_ids": ids, "attention_mask": att, "labels": list(ids)}  # loss on the padding too
                for ids, att in zip(enc["input_ids"], enc["attention_mask"])]
        return Dataset.from_list(rows)

    def run_round(self, sequences: Sequence[str], questions: Sequence[str], seed: int, title: str = "") -> ReferenceRound:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import Trainer, TrainingArguments, default_data_collator

        counted = {"tokens": 0, "real": 0}

        def collate(features):
            batch = default_data_collator(features)
            counted["tokens"] += int(batch["input_ids"].numel())
            counted["real"] += int(batch["attention_mask"].sum())
            return batch

        torch.manual_seed(seed)
        config = LoraConfig(
            r=self.lora.rank, lora_alpha=self.lora.alpha, lora_dropout=self.lora.dropout,
            target_modules=list(self.lora.target_modules), bias="none", task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(self.model, config)
        self.wrappers_built += 1
        t0 = time.perf_counter()
        cfg = self.cfg
        args = TrainingArguments(
            output_dir=str(self.work_dir), per_device_train_batch_size=1, gradient_accumulation_steps=cfg.grad_accum,
            num_train_epochs=cfg.epochs, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
            lr_scheduler_type=cfg.lr_schedule, seed=seed,
            # the engine's warm-up (TrainConfig.warmup_for): its steps, else its ratio, which transformers 5 reads
            # from a warmup_steps below 1
            warmup_steps=cfg.warmup_steps or cfg.warmup_ratio,
            eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=1,
            use_cpu=self.model.device.type == "cpu", dataloader_pin_memory=False, remove_unused_columns=False,
        )
        trainer = Trainer(model=peft_model, args=args, train_dataset=self._dataset(sequences), data_collator=collate)
        self.trainers_built += 1
        trainer.train()
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        steps = trainer.state.global_step
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

        peft_model.eval()
        predictions = [self._answer(peft_model, q, title) for q in questions]
        result = ReferenceRound(predictions, steps, counted["tokens"], counted["real"], train_seconds,
                                losses[-1] if losses else float("nan"))
        del trainer
        self.model = peft_model.unload()  # the LoRA layers out, the base layers back: the model as loaded
        self.model.eval()
        return result

    def _answer(self, model, question: str, title: str = "") -> str:
        import torch

        tok = self.tokenizer
        prompt = render_prompt(tok, self.answer_prompt.format(question=question, title=title), self.chat_template)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return text.split("\n")[0]
