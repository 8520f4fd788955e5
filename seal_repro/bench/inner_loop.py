"""`seal-repro bench inner-loop`: the toolkit's inner-loop round against the reference protocol's, side by side.

Both implementations adapt the same model (same weights, device, dtype) to the same passages' training
sequences with the same LoRA hyper-parameters, lr, epochs and per-round seeds, answer the same questions with
the same prompt and token budget, and are graded by the spec's grader — in one process, one after the other:

  engine     the round the baselines stage runs: `LoraEngine` (wrapped once, LoRA reset in place, a batch's
             sequences packed in rows, the spec's batch size), the adapter probe, then lm-eval scoring in-process
             (batched, left-padded greedy generation, stopping at a newline) — or, with --answers generate,
             the engine's own `generate` (batched, shared prompt prefix prefilled once, same stop);
  reference  seal_repro/bench/reference.py: a new get_peft_model wrapper and a new Trainer every round, every
             sequence padded to 2048 tokens, batch size 1, questions answered one at a time.

Output, one `name=value` per line on stdout (logs go to stderr), the last line always
`inner_loop_speedup_vs_reference`:
  device, dtype, condition, n_rounds,  what ran (condition: the training sequences — the passage alone, or
  sequences_per_round, self_edit_lines, the teacher self-edit's lines plus the passage)
  epochs
  engine_answers                      how the engine round answered: lm-eval or generate
  n_params                            N, the base model's parameters (a tied embedding counted once)
  engine_setup_seconds                one-off: wrapping the model + loading the lm-eval task (not in rounds)
  engine_round_seconds                mean wall time of an engine round: reset, train, probe, score
  reference_round_seconds             mean wall time of a reference round: wrap, tokenize, train, answer, unload
  engine_accuracy, reference_accuracy share of questions graded correct (same grader, same questions)
  engine_train_real_tokens            non-padding tokens the engine trained on (all rounds, all epochs)
  reference_train_tokens              tokens the reference trained on, padding included (steps x 2048)
  reference_train_real_tokens         the non-padding ones among them
  engine_train_flops_per_s            4 * N * engine real tokens / engine training seconds, over the timed
                                      rounds (one at a time, in this process, on every thread). Per token the
                                      forward costs 2N and the backward 2N (activation gradients only: the
                                      frozen base weights get no weight gradient); LoRA's own small matmuls and
                                      attention's length-squared terms are not counted, so this is a lower bound
  executor_workers, executor_threads_per_worker
                                      how the stages run rounds here: the spec's local executor (on a CPU,
                                      forked copies of the process side by side, seal_repro/executor.py)
  executor_train_rounds               rounds trained for the next line: 4 per worker, shaped as the timed ones
  executor_train_flops_per_s          4 * N * real tokens / wall seconds of training those rounds on the
                                      executor, as the stages do: the whole machine's training rate
  reference_padded_train_flops_per_s  4 * N * reference tokens (padding included) / reference training seconds
  matmul_flops_per_s                  the best measured torch.matmul FLOP/s (2*m*k*n / s) in the run's dtype
                                      and device, over the model's own layer shapes at the engine's tokens per
                                      step and a 2048^3 square product, each measured right before and right
                                      after the executor's training; matmul_best_shape says which won
  matmul_square_2048_flops_per_s      the 2048^3 product alone
  train_flops_fraction_of_matmul      executor_train_flops_per_s / matmul_flops_per_s (both use every core)
  round_train_flops_fraction_of_matmul  engine_train_flops_per_s / matmul_flops_per_s (one round at a time)
  generation_batch_size               prompts per batch in the batched run: the spec's evaluation.batch_size
                                      questions of its passages (fewer when there are fewer questions)
  batched_generation_tokens_per_s     engine.generate on those prompts at once (greedy)
  sequential_generation_tokens_per_s  engine.generate on the same questions one at a time
  batched_vs_sequential_generation    the ratio of the two (tokens = the decoded answers, re-tokenized)
  peak_memory_mb, peak_gpu_memory_mb  the process's peak RSS; torch's peak allocated GPU memory (0 on CPU)
  inner_loop_speedup_vs_reference     reference_round_seconds / engine_round_seconds

--quick: 1 round of the teacher_synthetic condition — the shape of every SEAL round, self-edit lines plus the
passage — with the self-edit cut to its first 3 lines and 2 epochs (minutes on 2 CPU cores); without it every
round of the teacher_synthetic condition, whole self-edits, the spec's epochs (hours on a CPU: meant for a GPU).
Explicit --rounds/--epochs/--condition/--self-edit-lines override either. Both implementations always get the same settings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
from pathlib import Path

from seal_repro.errors import UserError

DEFAULT_SPEC = "specs/knowledge/default.yaml"
DEFAULT_MODEL_DIR = Path("build/models/knowledge")
CONDITIONS = ("passage", "teacher_synthetic")
# --quick: one SEAL-shaped round (self-edit lines + the passage, as every RL round is) kept small enough for
# minutes on 2 CPU cores: the teacher self-edit cut to its first 3 lines, 2 epochs.
QUICK = {"rounds": 1, "epochs": 2, "condition": "teacher_synthetic", "self_edit_lines": 3}
ANSWERS = ("lm-eval", "generate")
SQUARE = 2048
# Rounds each executor worker trains for executor_train_flops_per_s: enough that starting the forked copies
# (milliseconds) and each copy's first step (its heap pages copied from the parent's on first write) are a small
# part of the wall time.
EXECUTOR_ROUNDS_PER_WORKER = 4
# batched_rounds_speedup: B rounds trained together (LoraEngine.train_many) against the same B one at a time.
BATCH_SIZES = (2, 4)


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    condition: str = "teacher_synthetic"
    rounds: int | None = None  # None: every planned round
    epochs: int | None = None  # None: the spec's inner_loop.epochs
    device: str | None = None  # None: the spec's model.device
    dtype: str | None = None  # None: the spec's model.dtype; "auto": bfloat16 on a CUDA GPU that has it
    answers: str = "lm-eval"  # how the engine round answers: the stages' lm-eval scorer, or engine.generate
    self_edit_lines: int | None = None  # keep only the first N lines of each self-edit (None: all of them)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inner-loop", help="time LoraEngine's inner-loop round against the reference protocol's",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"knowledge spec to take model, data and hyper-parameters "
                   f"from (default {DEFAULT_SPEC})")
    p.add_argument("--model-dir", default=None, help="a prepared model folder (as the prepare_model stage writes); "
                   f"default: {DEFAULT_MODEL_DIR} for the embedded model, prepared there first if absent")
    p.add_argument("--quick", action="store_true",
                   help="1 round of teacher_synthetic with the self-edit cut to 3 lines, 2 epochs: about 5 "
                        "minutes on 2 CPU cores")
    p.add_argument("--rounds", type=int, default=None, metavar="N", help="time the first N rounds (passages)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="override inner_loop.epochs for both")
    p.add_argument("--self-edit-lines", type=int, default=None, metavar="N",
                   help="keep the first N lines of each self-edit (both implementations; default all, 3 with --quick)")
    p.add_argument("--condition", choices=CONDITIONS, default=None,
                   help="training sequences: the passage alone, or the teacher self-edit + passage "
                        "(default teacher_synthetic)")
    p.add_argument("--answers", choices=ANSWERS, default="lm-eval",
                   help="how the engine round answers: lm-eval in-process, as the stages do (default), "
                        "or the engine's own batched generate")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: the spec's model.device")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default=None,
                   help="default: the spec's model.dtype; auto = bfloat16 on a CUDA GPU that supports it, "
                        "else the spec's")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the lines as one flat JSON object")
    p.set_defaults(func=run)


def settings_from_args(args) -> BenchSettings:
    for flag in ("rounds", "epochs", "self_edit_lines"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')}: must be at least 1 (got {value})")
    quick = QUICK if args.quick else {}
    return BenchSettings(
        condition=args.condition or quick.get("condition", "teacher_synthetic"),
        rounds=args.rounds or quick.get("rounds"), epochs=args.epochs or quick.get("epochs"),
        device=args.device, dtype=args.dtype, answers=args.answers,
        self_edit_lines=args.self_edit_lines or quick.get("self_edit_lines"),
    )


def resolve_model_dir(spec, model_dir: str | None) -> Path:
    from seal_repro import models
    from seal_repro.models import SOURCE_FILE

    if model_dir is not None:
        path = Path(model_dir)
        if not ((path / "config.json").exists() or (path / SOURCE_FILE).exists()):
            raise UserError(f"--model-dir {path}: not a prepared model folder (no config.json or {SOURCE_FILE})")
        return path
    if spec.model.source != "embedded":  # a pointer file: cheap to write, and never mixed up with the default's
        return models.prepare(spec.model, Path(tempfile.mkdtemp(prefix="seal-bench-model-")))
    if not (DEFAULT_MODEL_DIR / "config.json").exists():
        print(f"preparing the embedded model into {DEFAULT_MODEL_DIR} ...", file=sys.stderr)
        models.prepare(spec.model, DEFAULT_MODEL_DIR)
    return DEFAULT_MODEL_DIR


def run(args) -> int:
    from seal_repro.io import write_json
    from seal_repro.spec import load_spec

    spec = load_spec(args.spec)
    if spec.domain != "knowledge":
        raise UserError(f"{args.spec}: domain: the inner-loop benchmark needs a knowledge spec, not {spec.domain!r}")
    settings = settings_from_args(args)
    results = run_bench(spec, resolve_model_dir(spec, args.model_dir), settings)
    print(format_lines(results), flush=True)
    if args.out:
        write_json(args.out, results)
    return 0


def format_lines(results: dict) -> str:
    def fmt(key, v):
        if key == "inner_loop_speedup_vs_reference":
            return f"{v:.2f}"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    return "\n".join(f"{k}={fmt(k, v)}" for k, v in results.items())


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(spec, model_dir: Path, settings: BenchSettings = BenchSettings()) -> dict:
    """Run both implementations and return the results, in print order (speedup last)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the name=value lines only
        return _run_bench(spec, model_dir, settings)


def _resolve_dtype(spec, settings: BenchSettings, device: str) -> str:
    import torch

    dtype = settings.dtype or spec.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else spec.model.dtype
    if dtype == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--dtype bfloat16: this GPU does not support bfloat16 (use float16 or float32)")
    return dtype


def _plan(spec, settings: BenchSettings, passages=None):
    from seal_repro.data.loaders import load_passages
    from seal_repro.knowledge.inner_loop import plan_rounds

    if passages is None:
        passages = load_passages(spec.data, seed=spec.seed)
    if settings.self_edit_lines:
        n = settings.self_edit_lines
        passages = [dataclasses.replace(p, teacher_self_edits=tuple(
            "\n".join([ln for ln in e.splitlines() if ln.strip()][:n]) for e in p.teacher_self_edits)) for p in passages]
    rounds = [r for r in plan_rounds(settings.condition, passages, {}, spec) if r.sequences]
    if not rounds:
        raise UserError(f"condition {settings.condition}: the spec's data gives no training sequences "
                        "(no teacher self-edits?); try --condition passage")
    return rounds[: settings.rounds] if settings.rounds else rounds


def _accuracy(spec, rounds, predictions: list[str]) -> float:
    from seal_repro.graders import GradeItem, grade

    questions = [q for rnd in rounds for q in rnd.passage.questions]
    results = grade(spec.evaluation.grader, [GradeItem(q.question, q.golds, p) for q, p in zip(questions, predictions)])
    graded = [r.correct for r in results if r.correct is not None]
    return sum(graded) / len(graded) if graded else float("nan")


def _matmul_shapes(config, tokens_per_step: int) -> list[tuple[int, int, int]]:
    h, i, v = (getattr(config, k, None) for k in ("hidden_size", "intermediate_size", "vocab_size"))
    t = max(16, tokens_per_step)
    shapes = [(t, h, h), (t, h, i), (t, i, h), (t, h, v)] if h and i and v else []
    return shapes + [(SQUARE, SQUARE, SQUARE)]


def _generate_scorer(engine, spec, passages):
    """A score_fn answering with the engine's own batched generate, cut at the first newline like lm-eval's."""
    from seal_repro.engine import render_prompt

    ev = spec.evaluation
    questions = {q.id: q.question for p in passages for q in p.questions}
    titles = {q.id: p.title for p in passages for q in p.questions}

    def score(question_ids: list[str]) -> list[dict]:
        prompts = [render_prompt(engine.tokenizer, ev.answer_prompt.format(question=questions[i], title=titles[i]),
                                 spec.model.chat_template) for i in question_ids]
        answers = engine.generate(prompts, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, stop=("\n",))
        return [{"question_id": i, "prediction": a} for i, a in zip(question_ids, answers)]

    return score


@dataclasses.dataclass
class _GenerateScorer:
    """`--answers generate`: the engine's own batched generation in place of lm-eval (a Kit's scorer)."""

    score: object
    version: str | None = None


def _warm_up(engine, ref_model, tokenizer) -> None:
    """Library initialisation and first-call costs out of both timings (they share the process)."""
    import torch

    from seal_repro.engine import TrainExample, train_config
    from seal_repro.spec.training import TrainingSpec

    engine.reset(0)
    # Two sequences in one batch: the packing check (once per engine) and the packed path's first call.
    engine.train([TrainExample("warm up the kernels"), TrainExample("and the packed rows")],
                 train_config(TrainingSpec(epochs=1, batch_size=2)), seed=0)
    engine.reset(0)
    engine.generate(["warm up"], max_new_tokens=2, batch_size=1)
    with torch.no_grad():
        ref_model(**tokenizer("warm up the kernels", return_tensors="pt").to(ref_model.device))


def _executor_training(engine, spec, settings: BenchSettings, passages, cfg) -> dict:
    """The machine's training rate when the stages' executor trains rounds shaped like the timed ones (EXECUTOR_ROUNDS_PER_WORKER per
    worker, training only): what one in-process round cannot show on a CPU, where the executor runs rounds side
    by side in forked copies (seal_repro/executor.py)."""
    import time

    from seal_repro.engine import TrainExample
    from seal_repro.executor import local_executor

    ex = local_executor(spec.executor, spec.model.device)
    n = EXECUTOR_ROUNDS_PER_WORKER * ex.workers
    rounds = _plan(spec, dataclasses.replace(settings, rounds=n), passages)

    def train(i: int) -> int:
        rnd = rounds[i % len(rounds)]  # the plan may hold fewer rounds (one per passage): take them again
        engine.reset(rnd.seed(spec.seed))
        return engine.train([TrainExample(s) for s in rnd.sequences], cfg, seed=rnd.seed(spec.seed)).real_tokens

    t0 = time.perf_counter()
    tokens = sum(k for _, k in ex.map(train, n, engine.device))
    seconds = time.perf_counter() - t0
    return {"workers": ex.workers, "threads": ex.threads or 0, "rounds": n, "tokens": tokens,
            "seconds": seconds}


def _batched_rounds(engine, rounds, spec, cfg) -> dict:
    """Seconds to train B rounds one at a time (`train`) and together (`train_many`), the same rounds and seeds
    side by side in this process, for each B of BATCH_SIZES (the planned rounds repeated to fill B)."""
    import time

    from seal_repro.engine import TrainExample

    jobs = [([TrainExample(s) for s in r.sequences], r.seed(spec.seed)) for r in rounds if r.sequences]
    out: dict = {}
    if not jobs:
        return out
    for b in BATCH_SIZES:
        batch = [jobs[i % len(jobs)] for i in range(b)]
        t0 = time.perf_counter()
        for examples, seed in batch:
            engine.train(examples, cfg, seed=seed)
        solo = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.train_many(batch, cfg)
        together = time.perf_counter() - t0
        out[f"batched_rounds_speedup_b{b}"] = solo / together
        _log(f"batched rounds, B={b}: one at a time {solo:.2f} s, together {together:.2f} s")
    best = max(BATCH_SIZES, key=lambda b: out[f"batched_rounds_speedup_b{b}"])
    out["batched_rounds_best_b"] = best
    out["batched_rounds_speedup"] = out[f"batched_rounds_speedup_b{best}"]
    return out


def _run_bench(spec, model_dir: Path, settings: BenchSettings) -> dict:
    import torch

    from seal_repro import models
    from seal_repro.bench.measure import generation_throughput, matmul_flops, peak_gpu_mb, peak_rss_mb, timed
    from seal_repro.bench.reference import ReferenceInnerLoop
    from seal_repro.engine import LoraEngine, render_prompt, train_config
    from seal_repro.io import write_jsonl
    from seal_repro.knowledge.inner_loop import Job, Kit, compute_round
    from seal_repro.lmeval.knowledge import LmEvalQA
    from seal_repro.stages.helpers import set_threads

    set_threads()
    device = models.resolve_device(settings.device or spec.model.device)
    dtype = _resolve_dtype(spec, settings, device)
    mspec = spec.model.model_copy(update={"device": device, "dtype": dtype})
    from seal_repro.data.loaders import load_passages

    passages = load_passages(spec.data, seed=spec.seed)
    rounds = _plan(spec, settings, passages)
    if settings.epochs:
        spec = spec.model_copy(update={"inner_loop": spec.inner_loop.model_copy(update={"epochs": settings.epochs})})
    cfg = train_config(spec.inner_loop, mask_prompt=spec.inner_loop.mask_prompt)
    ev, lora = spec.evaluation, spec.inner_loop.lora

    with tempfile.TemporaryDirectory(prefix="seal-bench-") as tmp:
        questions_file = Path(tmp) / "questions.jsonl"
        seen = {rnd.passage.id: rnd.passage for rnd in rounds}
        write_jsonl(questions_file, [{"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer,
                                      "golds": list(q.golds)} for p in seen.values() for q in p.questions])
        model, tok = models.load(mspec, model_dir)
        setup_t: list[float] = []
        with timed(device, setup_t):
            engine = LoraEngine(model, tok, lora)
            if settings.answers == "lm-eval":
                scorer = LmEvalQA()(engine.base_model, tok, questions_file, spec)
            else:
                scorer = _GenerateScorer(_generate_scorer(engine, spec, seen.values()))
            kit = Kit(engine, scorer, code="bench")
        ref_model, ref_tok = models.load(mspec, model_dir)
        n_params = sum(p.numel() for p in ref_model.parameters())
        _warm_up(engine, ref_model, tok)

        train_stats = []
        engine_train = engine.train

        def recorded_train(*args, **kwargs):
            stats = engine_train(*args, **kwargs)
            train_stats.append(stats)
            return stats

        engine.train = recorded_train  # the same method; we only keep each round's TrainStats
        engine_t: list[float] = []
        engine_preds: list[str] = []
        for k, rnd in enumerate(rounds, 1):
            with timed(device, engine_t):
                res = compute_round(kit, Job(rnd, spec))
            engine_preds += [a["prediction"] for a in res["answers"]]
            _log(f"engine round {k}/{len(rounds)}: {engine_t[-1]:.2f} s")

        engine.train = engine_train
        real_tokens = sum(s.real_tokens for s in train_stats)
        train_seconds = sum(s.seconds for s in train_stats)
        steps = sum(s.steps for s in train_stats)
        shapes = _matmul_shapes(model.config, round(real_tokens / max(steps, 1)))
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        # The matmul rate right before and right after the executor's training, the best of the two per shape:
        # the machine's peak measured in the same minute as the training rate it is compared with (on a shared
        # machine the rate drifts over minutes), and never the lower of the two.
        mm = {s: matmul_flops(*s, device=device, dtype=tdtype) for s in shapes}
        # Before the reference rounds: their 2048-token steps grow this process's heap by gigabytes, which the
        # forked copies would inherit; a stage's process never holds that.
        throughput = _executor_training(engine, spec, settings, passages, cfg)
        mm = {s: max(mm[s], matmul_flops(*s, device=device, dtype=tdtype)) for s in shapes}

        reference = ReferenceInnerLoop(ref_model, ref_tok, lora, cfg, answer_prompt=ev.answer_prompt,
                                       max_new_tokens=ev.max_new_tokens, chat_template=spec.model.chat_template,
                                       work_dir=Path(tmp) / "trainer")
        ref_t: list[float] = []
        ref_rounds = []
        for k, rnd in enumerate(rounds, 1):
            with timed(device, ref_t):
                ref_rounds.append(reference.run_round(rnd.sequences, [q.question for q in rnd.passage.questions],
                                                      rnd.seed(spec.seed), title=rnd.passage.title))
            _log(f"reference round {k}/{len(rounds)}: {ref_t[-1]:.2f} s")

        # One full generation batch (evaluation.batch_size prompts) of the spec's questions, from every passage:
        # the batch the stages fill when they generate self-edits or score many rounds' answers.
        all_questions = [(q, p.title) for p in passages for q in p.questions]
        prompts = [render_prompt(tok, ev.answer_prompt.format(question=q.question, title=title), spec.model.chat_template)
                   for q, title in all_questions[: ev.batch_size]]
        gen = generation_throughput(engine, prompts, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
        _log(f"generation: batched and one-at-a-time outputs identical: {gen['same_outputs']}")
        batched = _batched_rounds(engine, rounds, spec, cfg)

        best_shape = max(mm, key=mm.get)
        ref_tokens = sum(r.trained_tokens for r in ref_rounds)
        ref_train_seconds = sum(r.train_seconds for r in ref_rounds)
        engine_flops = 4.0 * n_params * real_tokens / train_seconds
        executor_flops = 4.0 * n_params * throughput["tokens"] / throughput["seconds"]
        engine_round = sum(engine_t) / len(engine_t)
        ref_round = sum(ref_t) / len(ref_t)
        return {
            "device": device if device != "cuda" else f"cuda:{torch.cuda.get_device_name()}".replace(" ", "_"),
            "dtype": dtype,
            "condition": settings.condition,
            "engine_answers": settings.answers,
            "n_rounds": len(rounds),
            "sequences_per_round": sum(len(r.sequences) for r in rounds) / len(rounds),
            "self_edit_lines": settings.self_edit_lines or "all",
            "epochs": cfg.epochs,
            "n_params": n_params,
            "engine_setup_seconds": setup_t[0],
            "engine_round_seconds": engine_round,
            "reference_round_seconds": ref_round,
            "engine_accuracy": _accuracy(spec, rounds, engine_preds),
            "reference_accuracy": _accuracy(spec, rounds, [p for r in ref_rounds for p in r.predictions]),
            # each round's last step loss, averaged over rounds (the reference's counts its padding tokens too)
            "engine_final_loss": sum(s.final_loss for s in train_stats) / max(len(train_stats), 1),
            "reference_final_loss": sum(r.final_loss for r in ref_rounds) / max(len(ref_rounds), 1),
            "engine_train_real_tokens": real_tokens,
            "reference_train_tokens": ref_tokens,
            "reference_train_real_tokens": sum(r.real_tokens for r in ref_rounds),
            "engine_train_flops_per_s": engine_flops,
            "reference_padded_train_flops_per_s": 4.0 * n_params * ref_tokens / ref_train_seconds,
            "executor_workers": throughput["workers"],
            "executor_threads_per_worker": throughput["threads"],
            "executor_train_rounds": throughput["rounds"],
            "executor_train_flops_per_s": executor_flops,
            "matmul_flops_per_s": mm[best_shape],
            "matmul_best_shape": "x".join(map(str, best_shape)),
            "matmul_square_2048_flops_per_s": mm[(SQUARE, SQUARE, SQUARE)],
            "train_flops_fraction_of_matmul": executor_flops / mm[best_shape],
            "round_train_flops_fraction_of_matmul": engine_flops / mm[best_shape],
            "generation_batch_size": min(ev.batch_size, len(prompts)),
            "batched_generation_tokens_per_s": gen["batched_tokens_per_s"],
            "sequential_generation_tokens_per_s": gen["sequential_tokens_per_s"],
            "batched_vs_sequential_generation": gen["batched_tokens_per_s"] / gen["sequential_tokens_per_s"],
            **batched,
            "peak_memory_mb": peak_rss_mb(),
            "peak_gpu_memory_mb": peak_gpu_mb(device),
            "inner_loop_speedup_vs_reference": ref_round / engine_round,
        }
