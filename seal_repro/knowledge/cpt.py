"""Continued pretraining (the multi-passage setting): one training corpus per condition, one model trained on it.

The corpus of a condition joins, for every passage, the training sequences the single-passage inner loop would
use (the split self-edits, then the passage) for each of its first `self_edits_per_passage` self-edits, as the
reference's CPT.py does. `cpt.method` picks a LoRA (paper v1) or all weights (paper v2); training reuses the
inner loop's trainer (`LoraEngine.train`), so batching, schedule and masking are the same code.

`run_cpt` trains and scores every condition, side by side in forked copies on a CPU (they are independent), each
memoized whole.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import torch

from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.executor import local_executor
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.knowledge.baselines import read_passages
from seal_repro.knowledge.grading import grade_records
from seal_repro.knowledge.inner_loop import ScorerFactory
from seal_repro.knowledge.self_edits import by_passage
from seal_repro.knowledge.sequences import training_sequences
from seal_repro.memo import Memo, key_of
from seal_repro.policy import load_policy, policy_fingerprint


def condition_self_edits(condition: str, passage: Passage, base_edits: dict[str, list[str]],
                         seal_edits: dict[str, list[str]]) -> list[str | None]:
    """The self-edits a condition trains on for one passage; [None] = the passage alone, [] = no training."""
    if condition == "base":
        return []
    if condition == "passage":
        return [None]
    source = {"base_synthetic": base_edits, "seal": seal_edits}.get(condition)
    edits = list(passage.teacher_self_edits) if condition == "teacher_synthetic" else list(source.get(passage.id, []))
    if not edits:
        raise ValueError(f"cpt condition {condition!r}: passage {passage.id} has no self-edits")
    return edits


def corpus(condition: str, passages: Sequence[Passage], base_edits: dict[str, list[str]],
           seal_edits: dict[str, list[str]], spec) -> list[str]:
    cap = spec.cpt.self_edits_per_passage
    rules = spec.inner_loop if spec.cpt.split is None else spec.inner_loop.model_copy(update={"split": spec.cpt.split})
    seqs: list[str] = []
    for p in passages:
        edits = condition_self_edits(condition, p, base_edits, seal_edits)
        for edit in edits[:cap] if cap else edits:
            seqs += training_sequences(edit, p.title, p.context, rules)
    return seqs


class FullEngine(LoraEngine):
    """LoraEngine's trainer over *every* weight of the model (the paper's v2 CPT protocol): no adapter, so
    training changes the model itself; `reset` only seeds. Build a fresh one (and model) per condition."""

    def __init__(self, model, tokenizer):  # noqa: super().__init__ would wrap the model in a LoRA
        for p in model.parameters():
            p.requires_grad_(True)
        self.tokenizer = tokenizer
        self.adapter_name = None
        self.peft_model = self.base_model = model
        self._lora_layers = []
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self._bind_device(model)
        model.eval()

    def reset(self, seed: int) -> None:
        torch.manual_seed(seed)

    def logits_differ_from_base(self, *args, **kwargs) -> bool:
        raise NotImplementedError("a fully fine-tuned model keeps no copy of its base weights")

    def save_adapter(self, path) -> None:
        raise NotImplementedError("full fine-tuning has no adapter; save the model itself")


def examples(seqs: Sequence[str]) -> list[TrainExample]:
    return [TrainExample(s) for s in seqs]


def run_cpt(spec, model_dir: Path, data_dir: Path, base_self_edits: Path, seal_self_edits: Path | None, out: Path,
            scorer: ScorerFactory, memo: Memo, seal_policy: Path | None = None) -> dict:
    """Every cpt condition: its corpus, one model trained on it, all questions answered. The model trained is the
    base model, and for the seal condition with `cpt.seal_model: policy` the final SEAL policy (`seal_policy`,
    merged in), as the reference's CPT adapts the RL checkpoint. `base_self_edits`/`seal_self_edits`:
    self_edits.jsonl of the base model and of the final SEAL policy."""
    cpt = spec.cpt
    passages = read_passages(data_dir)[: cpt.n_passages]
    by_id = {p.id: p for p in passages}
    base_edits = by_passage(read_jsonl(base_self_edits))
    seal_edits = by_passage(read_jsonl(seal_self_edits)) if "seal" in cpt.conditions else {}
    qids = [q.id for p in passages for q in p.questions]
    cfg = train_config(cpt)
    lora = cpt.lora or spec.inner_loop.lora
    code = code_fingerprint(__name__, *scorer.code_modules)
    ev = spec.evaluation
    plan = []  # (condition, corpus, the model it trains (None: the base), memo key, memoized result or None)
    for cond in cpt.conditions:
        seqs = corpus(cond, passages, base_edits, seal_edits, spec)
        start = seal_policy if cond == "seal" and cpt.seal_model == "policy" else None
        key = key_of({
            "cpt": cpt.method, "code": code, "model": policy_fingerprint(model_dir, start), "dtype": spec.model.dtype,
            "chat_template": spec.model.chat_template, "sequences": seqs,
            "lora": lora.model_dump(mode="json") if cpt.method == "lora" else None, "train": cfg.__dict__,
            "seed": spec.seed, "questions": qids, "titles": [p.title for p in passages],
            "answer_prompt": ev.answer_prompt, "max_new_tokens": ev.max_new_tokens, "stop": list(ev.stop),
        })
        plan.append([cond, seqs, start, key, memo.get(key)])
    kit: dict = {}

    def build(start):
        kit.clear()
        gc.collect()
        model, tok = load_policy(spec, Path(model_dir), start)
        kit["engine"] = FullEngine(model, tok) if cpt.method == "full" else LoraEngine(model, tok, lora)
        kit["scorer"] = scorer(kit["engine"].base_model, tok, Path(data_dir) / "questions.jsonl", spec)
        kit["start"] = start

    def train_and_score(i: int) -> dict:
        _, seqs, start, _, _ = plan[i]
        if cpt.method == "full" and kit.get("trained"):
            build(start)  # full fine-tuning changed the weights: the next condition starts from its model again
        engine = kit["engine"]
        engine.reset(spec.seed)
        train = None
        if seqs:
            st = engine.train(examples(seqs), cfg, seed=spec.seed)
            kit["trained"] = True
            train = {"steps": st.steps, "real_tokens": st.real_tokens, "seconds": round(st.seconds, 3),
                     "final_loss": st.final_loss}
        return {"train": train, "answers": kit["scorer"].score(qids)}

    # The conditions are independent: the local executor's forked copies train those on one model side by side.
    for start in dict.fromkeys(entry[2] for entry in plan):
        todo = [i for i, entry in enumerate(plan) if entry[2] == start and entry[4] is None]
        if not todo:
            continue
        build(start)
        for j, result in local_executor(spec.executor, spec.model.device).map(
                lambda j: train_and_score(todo[j]), len(todo), kit["engine"].device,
                describe=lambda j: f"cpt condition {plan[todo[j]][0]}"):
            memo.put(plan[todo[j]][3], result)
            plan[todo[j]][4] = result
    records, stats = [], {}
    for cond, seqs, _, _, result in plan:
        answers = {a["question_id"]: a for a in result["answers"]}
        rounds = [{"condition": cond, "passage_id": p.id, "self_edit_index": 0, "repeat": 0,
                   "answers": [answers[q.id] for q in p.questions]} for p in passages]
        records += grade_records(spec, rounds, by_id, setting="cpt")
        stats[cond] = {"sequences": len(seqs), "train": result["train"]}
        print(f"cpt {cond}: {len(seqs)} training sequences, {len(qids)} questions")
    summary = {"skipped": False, "method": cpt.method, "protocol_version": cpt.protocol_version,
               "n_passages": len(passages), "conditions": stats, "memo_hits": memo.hits, "memo_misses": memo.misses}
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", summary)
    return summary
