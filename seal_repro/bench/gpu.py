"""`seal-repro bench gpu`: the GPU check — the paper's models' shapes, the paper's training settings, random weights.

Builds a randomly initialised model from a config shipped with the package (seal_repro/bench/configs/: the public
config.json values of Qwen2.5-7B and Llama-3.2-1B-Instruct; `tiny`: 2 layers of width 64) on the device, in bfloat16
on a GPU (float32 on a CPU), with an in-process word-level tokenizer of the config's vocabulary size — nothing is
downloaded — and measures, at the settings of the paper spec that goes with the config (--spec; knowledge:
specs/knowledge/paper-qwen2.5-7b.yaml, few-shot: specs/fewshot/paper-llama-3.2-1b.yaml; the CPT step at
specs/knowledge/paper-qwen2.5-7b-cpt.yaml's batch):

  generation   HF generate, sampled at the spec's self-edit temperature/top_p, 128 new tokens (forced) after
               200-token prompts, one batch of the spec's evaluation.batch_size prompts and one of 128; with vLLM
               when it is installed (same shapes, the random weights saved to a temporary folder first), else a
               line saying it is not
  reference    one SEAL round as the reference protocol runs it (seal_repro/bench/reference.py: a new PEFT
               wrapper and Trainer, every sequence padded to 2048, batch 1, questions answered one at a time), run
               at 1 and at 2 epochs after an untimed warm-up round (2 sequences, 1 question); the round at the
               spec's epochs is the straight line through the two (fixed cost + epochs x per-epoch cost) —
               measured, not all the spec's epochs run
  engine       the same round by LoraEngine (reset, then train; the spec's LoRA, epochs, batch, lr; the engine's
               own layout: no padding to 2048), 2 rounds after a warm-up round
  batched      train_many over B = 1, 4, 8 such rounds at once (seal_repro/multilora.py): rounds per second
  cpt          steps of continued pretraining's batch (4 sequences of 2048 tokens, LoRA, packed) with gradient
               checkpointing, then without it and automatic micro-batching (the micro-batch the engine settles
               on is printed)

A SEAL round here is 15 lines of 25 tokens plus a 150-token passage, each a training sequence (what the split
self-edit and the appended passage give), and 5 questions (`Scale`: PAPER; --config tiny runs TINY_SCALE, every
code path once on a few tokens, 1 epoch).

Output: `name=value` lines on stdout as each phase ends (logs on stderr), so a run cut short by a timeout keeps
what it measured; --out writes them as one JSON object at the end. Lines (docs/BENCHMARKS.md, "GPU check"):
  config, device, gpu, dtype, lora_dtype, n_params, n_matmul_params
  peak_flops_per_s, peak_flops_source   the GPU's dense bfloat16 peak from a table (H100/H200 989e12, A100
                                        312e12), else the best measured matmul rate ("measured")
  build_seconds                         building the random model on the device
  hf_generate_tokens_per_s_b<B>, vllm_generate_tokens_per_s_b<B>, vllm
  reference_round_seconds, reference_fixed_seconds, reference_epoch_seconds, reference_train_mfu,
  reference_peak_memory_mb
  engine_round_seconds, engine_round_steps, engine_round_tokens, engine_train_mfu, engine_peak_memory_mb,
  engine_speedup_vs_reference
  batched_rounds_per_s_b<B>, batched_peak_memory_mb_b<B>, batched_speedup_b8 (over B = 1), batched_train_mfu_b8
  cpt_step_seconds_checkpointed, cpt_peak_memory_mb_checkpointed, cpt_train_mfu_checkpointed,
  cpt_step_seconds_plain, cpt_peak_memory_mb_plain, cpt_micro_batch_size_plain
  peak_memory_mb, total_seconds
MFU = 4 x n_matmul_params x tokens / seconds / peak_flops_per_s: a frozen base trained through LoRA costs 2N a
token forward and 2N backward (activation gradients only); attention's length-squared terms, LoRA's own small
products and checkpointing's recomputation are not counted. Memory: torch's peak allocated GPU memory per phase
(the process's peak RSS on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from seal_repro.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REPO = Path(__file__).resolve().parents[2]
CONFIGS = {  # name: (config file in CONFIG_DIR or None for TINY, the paper spec whose settings it runs at)
    "qwen2.5-7b": ("qwen2.5-7b.json", "specs/knowledge/paper-qwen2.5-7b.yaml"),
    "llama-3.2-1b": ("llama-3.2-1b.json", "specs/fewshot/paper-llama-3.2-1b.yaml"),
    "tiny": (None, "specs/knowledge/paper-qwen2.5-7b.yaml"),
}
CPT_SPEC = "specs/knowledge/paper-qwen2.5-7b-cpt.yaml"
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
# Dense bfloat16 tensor-core peaks (no sparsity), from the vendor's data sheets; matched against the device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class Scale:
    """How much each phase runs. PAPER: the shapes of the paper's runs; TINY (with --config tiny): every code path
    once, small enough for a CPU in seconds."""

    lines: int = 15  # a SEAL round: the self-edit's lines ...
    line_tokens: int = 25
    passage_tokens: int = 150  # ... and the passage, each a training sequence
    questions: int = 5  # answered by the reference round, one at a time ...
    answer_tokens: int = 64  # ... with at most this many tokens (the knowledge paper spec's max_new_tokens)
    rounds: int = 2  # engine rounds timed, after one warm-up round
    batched: tuple[int, ...] = (1, 4, 8)  # rounds per train_many call
    reference_epochs: tuple[int, int] = (1, 2)  # the reference round is timed at these, then extrapolated
    reference_max_length: int = 2048  # the reference pads every sequence to this (bench/reference.py)
    gen_prompt_tokens: int = 200  # about a self-edit prompt's passage
    gen_new_tokens: int = 128
    gen_large_batch: int = 128  # besides the spec's evaluation.batch_size
    cpt_steps: int = 2
    cpt_tokens: int | None = None  # None: the CPT spec's max_seq_len (2048)
    epochs: int | None = None  # None: the spec's inner-loop epochs


PAPER = Scale()
TINY_SCALE = Scale(lines=3, line_tokens=8, passage_tokens=24, questions=2, answer_tokens=4, rounds=1, batched=(1, 2),
                   reference_max_length=128, gen_prompt_tokens=16, gen_new_tokens=8, gen_large_batch=8, cpt_steps=1,
                   cpt_tokens=128, epochs=1)
ANSWER_PROMPT = "Question: {question}\nAnswer:"  # a few-shot spec has no knowledge answer prompt: the bench's own


def register(subparsers) -> None:
    p = subparsers.add_parser("gpu", help="the GPU check: the paper's models (random weights) at the paper's "
                              "settings — s/round, batched rounds, memory, MFU, sampling", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="qwen2.5-7b",
                   help="model shape (default qwen2.5-7b); tiny runs on a CPU in under a minute")
    p.add_argument("--spec", default=None, help="spec to take the training settings from (default: the config's "
                   "paper spec, relative to the repository)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="override the spec's inner-loop epochs")
    p.add_argument("--no-vllm", action="store_true", help="skip the vLLM measurement even if vLLM is installed")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the lines as one flat JSON object")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Lines(dict):
    """The results: each value printed as `name=value` on `stream` (the real stdout) the moment it is set."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        print(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}", file=self.stream, flush=True)


def _spec_file(path: str) -> Path:
    p = Path(path)
    for candidate in (p, REPO / p):
        if candidate.exists():
            return candidate
    raise UserError(f"{path}: spec not found (run from the repository, or pass --spec)")


def model_config(name: str):
    """The transformers config of a shipped shape (its public config.json values) or of TINY."""
    from transformers import AutoConfig

    file = CONFIGS[name][0]
    values = dict(TINY) if file is None else {k: v for k, v in json.loads((CONFIG_DIR / file).read_text()).items()
                                               if not k.startswith("_")}
    return AutoConfig.for_model(values.pop("model_type"), **values)


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer whose ids cover the model's whole vocabulary (`w<i>` is id i; ids 0-3 are <unk>,
    <s>, </s>, <pad>): every text is its words, every sampled id decodes. Timing needs shapes, not language."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    vocab.update({f"w{i}": i for i in range(4, vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    tok.padding_side = "left"
    return tok


def words(gen, vocab_size: int, n: int) -> str:
    """`n` random words: `n` tokens of the word tokenizer."""
    return " ".join(f"w{i}" for i in gen.integers(4, vocab_size, n))


def synthetic_round(gen, vocab_size: int, scale: Scale = PAPER) -> tuple[list[str], list[str]]:
    """(training sequences, questions) shaped like a SEAL round: the self-edit's lines, then the passage."""
    return [words(gen, vocab_size, scale.line_tokens) for _ in range(scale.lines)] + \
        [words(gen, vocab_size, scale.passage_tokens)], [words(gen, vocab_size, 12) for _ in range(scale.questions)]


def peak_flops(device, dtype) -> tuple[float, str]:
    import torch

    from seal_repro.bench.measure import matmul_flops

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16_FLOPS.items():
            if key in name and dtype == torch.bfloat16:
                return value, "table"
        return matmul_flops(8192, 8192, 8192, device=device, dtype=dtype), "measured"
    return max(matmul_flops(n, n, n, device=device, dtype=dtype) for n in (512, 1024)), "measured"


class _Memory:
    """A phase's peak memory: torch's peak allocated GPU memory since the phase began, or the process's RSS peak.
    `_Memory.highest`: the highest of every phase so far."""

    highest = 0.0

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        from seal_repro.bench.measure import peak_gpu_mb, peak_rss_mb

        self.mb = peak_gpu_mb(self.device) if self.device.type == "cuda" else peak_rss_mb()
        _Memory.highest = max(_Memory.highest, self.mb)


def _generation(model, tok, device, batch: int, temperature: float, top_p: float, gen, scale: Scale) -> float:
    """Tokens/s of HF generate: `batch` random prompts, scale.gen_new_tokens new tokens each (forced), sampled."""
    import torch

    from seal_repro.bench.measure import timed

    ids = torch.tensor(gen.integers(4, model.config.vocab_size, (batch, scale.gen_prompt_tokens)), device=device)
    n = scale.gen_new_tokens
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                  pad_token_id=tok.pad_token_id, do_sample=temperature > 0)
    kwargs.update(temperature=temperature, top_p=top_p) if temperature > 0 else kwargs.update(temperature=None,
                                                                                            top_p=None, top_k=None)
    with torch.inference_mode():
        model.generate(ids[:1, :8], **{**kwargs, "attention_mask": kwargs["attention_mask"][:1, :8],
                                        "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        t: list[float] = []
        with timed(device, t):
            out = model.generate(ids, **kwargs)
    return (out.shape[1] - ids.shape[1]) * batch / t[0]


def _vllm(folder: str, vocab_size: int, batches, temperature, top_p, gen, lines: Lines, scale: Scale) -> None:
    """vLLM's sampling rate on the same random weights (vLLM reads them from `folder`), prompts as token ids (no
    tokenizer needed)."""
    import torch
    import vllm

    free, total = torch.cuda.mem_get_info()
    llm = vllm.LLM(model=folder, skip_tokenizer_init=True, dtype="bfloat16", seed=0, max_model_len=2048,
                   gpu_memory_utilization=max(0.2, min(0.85, free / total - 0.05)))
    params = vllm.SamplingParams(max_tokens=scale.gen_new_tokens, min_tokens=scale.gen_new_tokens,
                                 temperature=temperature, top_p=top_p, detokenize=False)
    for batch in batches:
        prompts = [{"prompt_token_ids": gen.integers(4, vocab_size, scale.gen_prompt_tokens).tolist()}
                   for _ in range(batch)]
        llm.generate(prompts[:1], params, use_tqdm=False)  # warm-up
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        lines[f"vllm_generate_tokens_per_s_b{batch}"] = sum(len(o.outputs[0].token_ids) for o in outs) / seconds
    lines["vllm"] = vllm.__version__


def run(args) -> int:
    from seal_repro.io import write_json

    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs: must be at least 1 (got {args.epochs})")
    results = run_bench(args.config, spec_path=args.spec, device=args.device, epochs=args.epochs,
                        vllm=not args.no_vllm)
    if args.out:
        write_json(args.out, results)
    return 0


def run_bench(config: str = "tiny", *, spec_path: str | None = None, device: str = "auto", epochs: int | None = None,
              vllm: bool = True) -> dict:
    """Every measurement, in print order (see the module's docstring); returns them as one dict."""
    import os

    if config not in CONFIGS:
        raise UserError(f"--config {config}: one of {', '.join(sorted(CONFIGS))}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    lines = Lines(sys.stdout)
    with contextlib.redirect_stdout(sys.stderr):  # library chatter off stdout: it carries the lines
        _run(config, spec_path, device, epochs, vllm, lines)
    return dict(lines)


def _run(config: str, spec_path: str | None, device_name: str, epochs: int | None, use_vllm: bool,
         lines: Lines) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from seal_repro import models
    from seal_repro.bench.measure import timed
    from seal_repro.bench.reference import ReferenceInnerLoop
    from seal_repro.engine import LoraEngine, TrainExample, train_config
    from seal_repro.spec import load_spec

    t_start = time.perf_counter()
    spec = load_spec(_spec_file(spec_path or CONFIGS[config][1]))
    cpt_spec = load_spec(_spec_file(CPT_SPEC)).cpt
    device = torch.device(models.resolve_device(device_name))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    models.enable_tf32(device.type, spec.model.tf32)
    il = spec.inner_loop
    scale = TINY_SCALE if config == "tiny" else PAPER
    epochs = epochs or scale.epochs
    settings = {"pad_to_max_len": False, **({"epochs": epochs} if epochs else {})}  # the engine's own layout
    cfg = train_config(il, mask_prompt=False, **settings)
    cpt_tokens = scale.cpt_tokens or cpt_spec.max_seq_len
    _Memory.highest = 0.0
    lines["config"] = config
    lines["spec"] = str(spec_path or CONFIGS[config][1])
    lines["device"] = device.type
    lines["gpu"] = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "none"
    lines["dtype"] = str(dtype).removeprefix("torch.")
    lines["lora_dtype"] = spec.model.lora_dtype
    lines["round_shape"] = f"{scale.lines}x{scale.line_tokens}+{scale.passage_tokens}"
    lines["epochs"] = cfg.epochs
    lines["reference_max_length"] = scale.reference_max_length
    lines["cpt_shape"] = f"{cpt_spec.batch_size}x{cpt_tokens}"

    t: list[float] = []
    with timed(device, t):
        mconfig = model_config(config)
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(mconfig, dtype=dtype)
        model.eval()
        setattr(model, models.LORA_DTYPE_ATTR, spec.model.lora_dtype)
        tok = word_tokenizer(mconfig.vocab_size)
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    lines["n_params"] = sum(p.numel() for p in model.parameters())
    lines["n_matmul_params"] = n_matmul
    lines["build_seconds"] = t[0]
    peak, source = peak_flops(device, dtype)
    lines["peak_flops_per_s"] = peak
    lines["peak_flops_source"] = source

    def mfu(tokens: float, seconds: float) -> float:
        return 4.0 * n_matmul * tokens / seconds / peak

    gen = np.random.default_rng(0)
    sampling = spec.self_edit.sampling
    temperature, top_p = sampling.temperature, sampling.top_p
    gen_batches = sorted({spec.evaluation.batch_size, scale.gen_large_batch})
    with _Memory(device):
        for batch in gen_batches:
            lines[f"hf_generate_tokens_per_s_b{batch}"] = _generation(model, tok, device, batch, temperature, top_p,
                                                                      gen, scale)

    # The reference protocol first, on the plain model (it wraps and unloads its own LoRA each round).
    seqs, questions = synthetic_round(gen, mconfig.vocab_size, scale)
    answer_prompt = getattr(spec.evaluation, "answer_prompt", ANSWER_PROMPT)
    # The knowledge spec's answer budget; a few-shot spec's (2048: a whole ARC grid) would make the reference's
    # one-at-a-time answers most of the check's time, so answers are capped at scale.answer_tokens.
    max_new = min(spec.evaluation.max_new_tokens, scale.answer_tokens)
    lines["reference_answer_tokens"] = max_new
    ref_t: dict[int, float] = {}
    ref_tokens: dict[int, tuple[int, float]] = {}
    with _Memory(device) as mem, tempfile.TemporaryDirectory(prefix="seal-bench-gpu-") as tmp:
        # Warm-up (untimed): the first round pays one-time costs (imports, the first PEFT wrap and Trainer, kernel
        # selection) that would otherwise land in the 1-epoch round alone and bend the line through the two
        # timings (a negative per-epoch cost); two sequences and one question have the padded shapes already.
        warm = ReferenceInnerLoop(model, tok, il.lora, train_config(il, epochs=scale.reference_epochs[0]),
                                  answer_prompt=answer_prompt, max_new_tokens=max_new, chat_template=False,
                                  work_dir=Path(tmp) / "warm-up", max_length=scale.reference_max_length)
        warm.run_round(seqs[:2], questions[:1], seed=0, title="w5")
        model, warm = warm.model, None
        for e in scale.reference_epochs:
            reference = ReferenceInnerLoop(model, tok, il.lora, train_config(il, epochs=e), answer_prompt=answer_prompt,
                                           max_new_tokens=max_new, chat_template=False, work_dir=Path(tmp) / str(e),
                                           max_length=scale.reference_max_length)
            timing: list[float] = []
            with timed(device, timing):
                rnd = reference.run_round(seqs, questions, seed=e, title="w5")
            model = reference.model
            ref_t[e], ref_tokens[e] = timing[0], (rnd.trained_tokens, rnd.train_seconds)
            _log(f"reference round, {e} epoch(s): {timing[0]:.1f} s ({rnd.steps} steps)")
        reference = None
    (e1, e2), full_epochs = scale.reference_epochs, cfg.epochs
    per_epoch = (ref_t[e2] - ref_t[e1]) / (e2 - e1)
    fixed = ref_t[e1] - e1 * per_epoch
    lines["reference_fixed_seconds"] = fixed
    lines["reference_epoch_seconds"] = per_epoch
    lines["reference_round_seconds"] = fixed + full_epochs * per_epoch
    lines["reference_train_mfu"] = mfu(*ref_tokens[e2])
    lines["reference_peak_memory_mb"] = mem.mb

    engine = LoraEngine(model, tok, il.lora)
    examples = [TrainExample(s) for s in seqs]
    engine.reset(0)
    engine.train(examples, cfg, seed=0)  # warm-up: kernels, the packing check
    round_t: list[float] = []
    with _Memory(device) as mem:
        for r in range(scale.rounds):
            with timed(device, round_t):
                engine.reset(r + 1)
                stats = engine.train(examples, cfg, seed=r + 1)
    engine_round = sum(round_t) / len(round_t)
    lines["engine_round_seconds"] = engine_round
    lines["engine_round_steps"] = stats.steps
    lines["engine_round_tokens"] = stats.real_tokens
    lines["engine_train_mfu"] = mfu(stats.real_tokens, engine_round)
    lines["engine_peak_memory_mb"] = mem.mb
    lines["engine_speedup_vs_reference"] = lines["reference_round_seconds"] / engine_round

    rates = {}
    for b in scale.batched:
        jobs = [([TrainExample(s) for s in synthetic_round(gen, mconfig.vocab_size, scale)[0]], 100 + k)
                for k in range(b)]
        engine.train_many(jobs[:1], cfg)  # warm-up at this shape's first step
        t = []
        with _Memory(device) as mem, timed(device, t):
            _, stats_b = engine.train_many(jobs, cfg)
        rates[b] = b / t[0]
        lines[f"batched_rounds_per_s_b{b}"] = rates[b]
        lines[f"batched_peak_memory_mb_b{b}"] = mem.mb
        if b == scale.batched[-1]:
            lines[f"batched_train_mfu_b{b}"] = mfu(sum(s.real_tokens for s in stats_b), t[0])
    lines[f"batched_speedup_b{scale.batched[-1]}"] = rates[scale.batched[-1]] / rates[scale.batched[0]]

    cpt_seqs = [TrainExample(words(gen, mconfig.vocab_size, cpt_tokens - 1))  # + EOS: cpt_tokens tokens
                for _ in range(cpt_spec.batch_size * scale.cpt_steps)]
    for mode, extra in (("checkpointed", {"gradient_checkpointing": True}), ("plain", {})):
        ccfg = train_config(cpt_spec, epochs=1, grad_accum=1, pad_to_max_len=False, max_seq_len=cpt_tokens, **extra)
        engine.reset(0)
        try:
            with _Memory(device) as mem:
                cstats = engine.train(cpt_seqs, ccfg, seed=0)
        except torch.OutOfMemoryError:  # even one sequence a pass: what checkpointing is for
            lines[f"cpt_step_seconds_{mode}"] = "out of memory"
            continue
        lines[f"cpt_step_seconds_{mode}"] = cstats.seconds / max(cstats.steps, 1)
        lines[f"cpt_peak_memory_mb_{mode}"] = mem.mb
        lines[f"cpt_train_mfu_{mode}"] = mfu(cstats.real_tokens, cstats.seconds)
        if mode == "plain":
            lines["cpt_micro_batch_size_plain"] = engine.micro_batch_size(cpt_spec.batch_size, ccfg)
    engine.set_checkpointing(False)

    if not use_vllm:
        lines["vllm"] = "skipped (--no-vllm)"
    elif device.type != "cuda":
        lines["vllm"] = "skipped (no GPU)"
    elif not _installed("vllm"):
        lines["vllm"] = "not installed"
    else:
        with tempfile.TemporaryDirectory(prefix="seal-bench-vllm-") as tmp:
            engine.peft_model.unload().save_pretrained(tmp, safe_serialization=True)  # the plain random model
            tok.save_pretrained(tmp)
            del engine, model
            gc.collect()
            torch.cuda.empty_cache()
            try:
                _vllm(tmp, mconfig.vocab_size, gen_batches, temperature, top_p, gen, lines, scale)
            except Exception as err:  # a check, not a stage: say what failed and keep the other lines
                lines["vllm"] = f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    lines["peak_memory_mb"] = _Memory.highest
    lines["total_seconds"] = time.perf_counter() - t_start


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
