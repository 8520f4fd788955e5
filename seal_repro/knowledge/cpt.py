"""Continued pretraining (the multi-passage setting): one training corpus per condition, one model trained on it.

The corpus of a condition joins, for every passage, the training sequences the single-passage inner loop would
use (the split self-edits, then the passage) for each of its first `self_edits_per_passage` self-edits, as the
reference's CPT.py does. `cpt.method` picks a LoRA (paper v1) or all weights (paper v2); training reuses the
inner loop's trainer (`LoraEngine.train`), so batching, schedule and masking are the same code.

Full fine-tuning keeps float32 master weights: a bfloat16 model is trained in float32 under bfloat16 autocast
(`FullEngine`), since an AdamW step on a bfloat16 weight rounds away whenever it is below ~0.4% of the weight.
With `cpt.distributed` each condition's model is trained by `processes` processes (`accelerate launch`, this
module as the worker: `python -m seal_repro.knowledge.cpt WORK_DIR`), its weights, gradients and AdamW states
sharded by torch's FSDP2 (or replicated, DDP), and scored in the stage's process.

`run_cpt` trains and scores every condition, each one job on the spec's executor (they are independent): side by
side in forked copies on a CPU, or on Ray workers (`CPTRecipe`, `train_and_score`), each memoized whole.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro import models
from seal_repro.engine import DTYPES, LoraEngine, TrainExample, train_config
from seal_repro.errors import UserError
from seal_repro.executor import free_device_memory, local_executor, make_executor, remote, thread_budget
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
    training changes the model itself; `reset` only seeds. Build a fresh one (and model) per condition.

    Master weights: a model loaded in bfloat16 is trained in float32 — cast up for `train`, every forward under
    bfloat16 autocast (matmuls in bfloat16, weights, gradients, AdamW states and updates in float32) — and cast
    back to bfloat16 when `train` returns (the model answers in the dtype it loaded in). Why: bfloat16 keeps 8
    significant bits, so an AdamW step below ~0.4% of a weight (lr 1e-5 on a weight of 0.01) rounds to nothing
    and a bfloat16-only model does not learn from it. The cost: 16 bytes a weight while training (float32 weight,
    gradient, two AdamW moments), not 8 — 112 GB for 7B, which `cpt.distributed` shards over GPUs.
    `master_weights=False`: train in the loaded dtype (what this engine did before)."""

    _snapshot_grads = False  # a copy of every weight's gradient is what micro-batching is there to avoid

    def __init__(self, model, tokenizer, master_weights: bool = True):  # noqa: super().__init__ would wrap a LoRA
        for p in model.parameters():
            p.requires_grad_(True)
        self.tokenizer = tokenizer
        self.adapter_name = None
        self.peft_model = self.base_model = model
        self._lora_layers = []
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self._bind_device(model)
        self.compute_dtype = self._dtype
        self.master_weights = master_weights and self._dtype != torch.float32
        if self.master_weights and self._dtype == torch.float16:
            raise UserError("cpt.method full with model.dtype float16: float32 master weights under float16 autocast "
                            "need loss scaling, which this engine does not do; use bfloat16 or float32")
        model.eval()

    def train(self, examples, cfg, seed):
        if not self.master_weights:
            return super().train(examples, cfg, seed)
        self.base_model.to(torch.float32)  # in place: the same Parameter objects, now float32 (the masters)
        try:
            return super().train(examples, cfg, seed)
        finally:
            self.base_model.to(self.compute_dtype)

    def _compute(self):
        if not self.master_weights:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def reset(self, seed: int) -> None:
        torch.manual_seed(seed)

    def logits_differ_from_base(self, *args, **kwargs) -> bool:
        raise NotImplementedError("a fully fine-tuned model keeps no copy of its base weights")

    def save_adapter(self, path) -> None:
        raise NotImplementedError("full fine-tuning has no adapter; save the model itself")


def examples(seqs: Sequence[str]) -> list[TrainExample]:
    return [TrainExample(s) for s in seqs]


# -- full fine-tuning over several processes (cpt.distributed) --------------------------------------------------
WORKER = __spec__.name  # this module, also when it runs as __main__: python -m WORKER WORK_DIR
JOB_FILE, STATS_FILE, MODEL_FOLDER = "job.json", "stats.json", "model"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(distributed, work: Path, port: int | None = None) -> list[str]:
    """`accelerate launch` of `distributed.processes` workers on this machine (torchrun underneath; one process per
    GPU on a CUDA machine). Precision is the worker's business (FSDP2's mixed-precision policy, or autocast), so
    accelerate's own is off."""
    return [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
            "--num_processes", str(distributed.processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(port or _free_port()), "-m", WORKER, str(work)]


def train_launched(spec, model_dir: Path, start: Path | None, seqs: Sequence[str], work: Path, cpt=None) -> dict:
    """Train the model (the base, or `start`'s policy merged in) on `seqs` in `cpt.distributed.processes`
    processes; the trained model is left in work/model (in model.dtype), and its training summary returned."""
    cpt = cpt or spec.cpt
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / JOB_FILE, {
        "model": spec.model.model_dump(mode="json"), "model_dir": str(Path(model_dir).resolve()),
        "policy": None if start is None else str(Path(start).resolve()), "cpt": cpt.model_dump(mode="json"),
        "sequences": list(seqs), "seed": spec.seed})
    code = subprocess.run(launch_command(cpt.distributed, work), env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
                          ).returncode
    if code != 0 or not (work / STATS_FILE).exists():
        raise RuntimeError(f"cpt: distributed training ({cpt.distributed.processes} processes, "
                           f"{cpt.distributed.backend}) failed with exit code {code}; its log is above")
    return json.loads((work / STATS_FILE).read_text(encoding="utf-8"))


def _shard(model, backend: str, device, compute_dtype):
    """The model to run forward on: FSDP2 (`fully_shard` on every decoder layer, then the root: a layer's weights
    gathered only while it computes; float32 shards and reduction, `compute_dtype` compute) or DDP. Why torch's
    fully_shard rather than accelerate's FSDP plugin: accelerate applies FSDP only when it sees GPUs (on a CPU it
    falls back to DDP), and it is what accelerate's FSDP2 path calls — so the code the GPUs run is the code the
    2-process CPU test runs."""
    if backend == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model.to(device)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32) \
        if compute_dtype != torch.float32 else MixedPrecisionPolicy()
    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)  # the rest (embeddings, final norm, head) in one group
    return model


def _save_trained(state: dict, config, tokenizer, out: Path, spec) -> None:
    """The gathered weights as a plain HF folder in model.dtype (built on the meta device: no second copy in
    memory). `spec`: the ModelSpec."""
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[spec.dtype]
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=spec.trust_remote_code)
    clean.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    clean.tie_weights()
    clean.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def worker(work: Path) -> None:
    """One process of a distributed full fine-tuning (launched by `train_launched`): the same batches, loss,
    schedule and clipping as `FullEngine.train` in one process. Each batch's sequences are dealt out over the
    processes (sequence i to process i mod N); a process's loss is the sum over its targets divided by the whole
    batch's target count, times N (FSDP and DDP average the gradients over processes), so the averaged gradient is
    the whole batch's. A process with nothing to do in a pass still runs one (a one-token forward, zero loss):
    sharded weights are gathered collectively."""
    import torch.nn.functional as F
    from accelerate import Accelerator
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import get_scheduler

    from seal_repro.spec.cpt import CPTSpec
    from seal_repro.spec.model import ModelSpec

    job = json.loads((work / JOB_FILE).read_text(encoding="utf-8"))
    mspec, cpt = ModelSpec.model_validate(job["model"]), CPTSpec.model_validate(job["cpt"])
    device = models.resolve_device(mspec.device)
    acc = Accelerator(cpu=device == "cpu")  # the process group (nccl / gloo) and this process's device
    rank, world = acc.process_index, acc.num_processes
    if device == "cpu":
        torch.set_num_threads(max(1, thread_budget() // world))
    models.enable_tf32(device, mspec.tf32)
    compute = DTYPES[mspec.dtype]
    cfg, seed = train_config(cpt), job["seed"]
    # Every process loads the whole model on the CPU in float32 (the master weights), then keeps its shard.
    model, tok = load_policy(SimpleNamespace(model=mspec.model_copy(update={"device": "cpu", "dtype": "float32"})),
                             Path(job["model_dir"]), None if job["policy"] is None else Path(job["policy"]))
    engine = FullEngine(model, tok)  # the single-process engine's encoding, batches and layout
    engine.reset(seed)
    encoded = [engine._encode(TrainExample(s), cfg) for s in job["sequences"]]
    packed = engine.uses_packing(cfg)
    plan, total = engine.step_plan(encoded, cfg, seed, packed)
    engine.set_checkpointing(cfg.gradient_checkpointing)
    net = _shard(model, cpt.distributed.backend, acc.device, compute)
    autocast = torch.autocast(acc.device.type, dtype=compute) if cpt.distributed.backend == "ddp" \
        and compute != torch.float32 else contextlib.nullcontext()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_for(total), num_training_steps=total)
    stats = {"steps": 0, "real_tokens": 0}
    losses: list[torch.Tensor] = []

    def step() -> None:
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        stats["steps"] += 1

    t0 = time.perf_counter()
    net.train()
    micro = 0
    for idx in plan:
        batch = [encoded[i] for i in idx]
        targets = max(1, int(engine._targets(engine._collate(batch, cfg, packed, to_device=False)["labels"]).sum()))
        share, per_process = batch[rank::world], math.ceil(len(batch) / world)
        size = min(cfg.micro_batch_size or per_process, per_process)
        local = torch.zeros((), device=acc.device)
        for j in range(math.ceil(per_process / size)):  # the same number of passes in every process
            group = share[j * size : (j + 1) * size]
            if group:
                enc = {k: v.to(acc.device) for k, v in engine._collate(group, cfg, packed, to_device=False).items()}
                labels = enc.pop("labels")
                with autocast:
                    logits = net(**enc, use_cache=False).logits
                ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                     ignore_index=-100, reduction="sum")
            else:
                with autocast:
                    logits = net(input_ids=torch.full((1, 1), tok.pad_token_id, device=acc.device), use_cache=False).logits
                ce = logits.float().sum() * 0.0
            (ce * (world / targets / cfg.grad_accum)).backward()
            local += ce.detach()
        torch.distributed.all_reduce(local)
        losses.append(local / targets)
        stats["real_tokens"] += sum(len(ids) for ids, _ in batch)
        micro += 1
        if micro % cfg.grad_accum == 0:
            step()
            if stats["steps"] >= total:
                break
    else:
        if micro % cfg.grad_accum:
            step()
    seconds = time.perf_counter() - t0
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        loss_values = torch.stack(losses).float().cpu().tolist() if losses else []
        _save_trained(state, model.config, tok, work / MODEL_FOLDER, mspec)
        write_json(work / STATS_FILE, {**stats, "seconds": round(seconds, 3),
                                       "final_loss": loss_values[-1] if loss_values else float("nan"),
                                       "losses": loss_values, "processes": world, "backend": cpt.distributed.backend})
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _train_and_score_launched(spec, model_dir: Path, data_dir: Path, seqs, start, scorer, qids, out: Path) -> dict:
    """One condition with cpt.distributed: trained by the launched processes, scored here on the model they saved."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".cpt-train-"))
    try:
        train = None
        if seqs:
            stats = train_launched(spec, model_dir, start, seqs, work)
            train = {k: stats[k] for k in ("steps", "real_tokens", "seconds", "final_loss")}
            model, tok = models.load(spec.model, work / MODEL_FOLDER)
        else:
            model, tok = load_policy(spec, Path(model_dir), start)
        answers = scorer(model, tok, Path(data_dir) / "questions.jsonl", spec).score(qids)
        return {"train": train, "answers": answers}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        gc.collect()


@dataclass(frozen=True)
class CPTRecipe:
    """What a worker needs to train and score CPT conditions (picklable; its paths travel by value to Ray workers,
    executor.ByValue): the base model, the questions, the scorer, and the SEAL policy a seal condition may start
    from."""

    spec: Any
    model_dir: str
    questions_file: str
    scorer: ScorerFactory
    seal_policy: str | None = None

    @classmethod
    def of(cls, spec, model_dir, questions_file, scorer, seal_policy=None) -> CPTRecipe:
        return cls(spec, str(Path(model_dir).resolve()), str(Path(questions_file).resolve()), scorer,
                   None if seal_policy is None else str(Path(seal_policy).resolve()))

    def __call__(self) -> CPTKit:
        return CPTKit(self)


class CPTKit:
    """A process's CPT state: the engine over the model a condition starts from (the base, or the SEAL policy
    merged in) and its scorer, built when a condition needs it and rebuilt after full fine-tuning changed the
    weights."""

    def __init__(self, recipe: CPTRecipe):
        self.recipe = recipe
        self.engine = self.scorer = None
        self.from_policy: bool | None = None
        self.trained = False

    @property
    def device(self):
        return self.engine.device if self.engine is not None else models.resolve_device(self.recipe.spec.model.device)

    def prepare(self, from_policy: bool) -> None:
        r, cpt = self.recipe, self.recipe.spec.cpt
        if self.engine is not None and self.from_policy == from_policy and not (cpt.method == "full" and self.trained):
            return
        self.engine = self.scorer = None
        gc.collect()
        start = Path(r.seal_policy) if from_policy else None
        model, tok = load_policy(r.spec, Path(r.model_dir), start)
        self.engine = FullEngine(model, tok) if cpt.method == "full" else LoraEngine(model, tok,
                                                                                      cpt.lora or r.spec.inner_loop.lora)
        self.scorer = r.scorer(self.engine.base_model, tok, Path(r.questions_file), r.spec)
        self.from_policy, self.trained = from_policy, False


@dataclass(frozen=True)
class CPTJob:
    condition: str
    sequences: tuple[str, ...]
    from_policy: bool  # the seal condition under cpt.seal_model: policy
    question_ids: tuple[str, ...]

    def describe(self) -> str:
        return f"cpt condition {self.condition}"


def train_and_score(kit: CPTKit, job: CPTJob) -> dict:
    """One condition: its model trained on its corpus (full fine-tuning: from a freshly loaded model), then every
    question answered (the executor's round function)."""
    spec = kit.recipe.spec
    kit.prepare(job.from_policy)  # full fine-tuning changed the weights: the next condition starts again
    kit.engine.reset(spec.seed)
    train = None
    if job.sequences:
        st = kit.engine.train(examples(job.sequences), train_config(spec.cpt), seed=spec.seed)
        kit.trained = True
        train = {"steps": st.steps, "real_tokens": st.real_tokens, "seconds": round(st.seconds, 3),
                 "final_loss": st.final_loss}
    return {"train": train, "answers": kit.scorer.score(list(job.question_ids))}


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
            "lora_dtype": spec.model.lora_dtype if cpt.method == "lora" else None,
            "distributed": cpt.distributed.model_dump(mode="json") if cpt.distributed else None,
            "seed": spec.seed, "questions": qids, "titles": [p.title for p in passages],
            "answer_prompt": ev.answer_prompt, "max_new_tokens": ev.max_new_tokens, "stop": list(ev.stop),
        })
        plan.append([cond, seqs, start, key, memo.get(key)])
    if cpt.distributed is not None:  # each condition trained by the launched processes (every GPU), one by one
        for entry in plan:
            if entry[4] is None:
                entry[4] = _train_and_score_launched(spec, model_dir, data_dir, entry[1], entry[2], scorer, qids, out)
                memo.put(entry[3], entry[4])
    # The conditions are independent, each one job: side by side in the local executor's forked copies (those on
    # one start model share it, loaded once here), or on Ray workers (one GPU and one model each; the stage loads
    # none).
    recipe = CPTRecipe.of(spec, model_dir, Path(data_dir) / "questions.jsonl", scorer, seal_policy)
    jobs = {i: CPTJob(entry[0], tuple(entry[1]), entry[2] is not None, tuple(qids))
            for i, entry in enumerate(plan) if entry[4] is None}
    if remote(spec.executor):
        batches = [list(jobs)] if jobs else []
        kit, executor = None, make_executor(spec.executor, recipe, spec.model.device)
    else:  # one batch per start model, built before the copies fork
        batches = [b for b in ([i for i in jobs if jobs[i].from_policy == f] for f in (False, True)) if b]
        kit, executor = recipe(), local_executor(spec.executor, spec.model.device)
    with executor:
        for todo in batches:
            if kit is not None:
                kit.prepare(jobs[todo[0]].from_policy)
            for j, result in executor.run(train_and_score, [jobs[i] for i in todo], kit, describe=CPTJob.describe):
                memo.put(plan[todo[j]][3], result)
                plan[todo[j]][4] = result
    kit = None
    free_device_memory()
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m seal_repro.knowledge.cpt WORK_DIR`: one training process of a distributed CPT (see worker)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m seal_repro.knowledge.cpt WORK_DIR (launched by accelerate launch; see launch_command)",
              file=sys.stderr)
        return 2
    worker(Path(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
