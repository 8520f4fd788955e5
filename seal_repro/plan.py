"""Cost of a spec before running it: generations, inner-loop rounds, training tokens, FLOPs, time.

FLOP model (per token): LoRA training 4·N (forward 2N + activation gradients 2N; frozen weights get no
weight gradient), full fine-tuning 6·N, generation 2·N. Token counts are estimates from the spec
(passage and answer lengths use typical values when the data is not at hand); they are labelled as such.

This module holds what both domains share (the `Plan` they fill in, the model's parameter count) and imports
no domain; the estimates themselves are `knowledge/plan.py` and `fewshot/plan.py`, and `seal-repro plan`
(`commands/plan.py`) picks one by the spec's domain.

The GPU plan (`seal-repro plan --gpu PRESET | --rates FILE [--workers N]`): each domain also records its work as
`Part`s per stage (training tokens, prompt and generated tokens, decode steps, how many independent jobs), and
`Hardware` turns a part into device seconds: training and prefill at a sustained FLOP rate (a preset's data-sheet
peak x an assumed MFU, or the MFU `seal-repro bench gpu` measured), decoding by a memory-bound step model (a step
of B sequences reads every weight once) or by measured tokens/s. `render_gpu` prints GPU-hours (busy device
time) and wall-hours with the workers, per stage: inner-loop rounds, CPT conditions and continual sequences are
spread over the workers; self-edit sampling and policy SFT run in the stage's process on one GPU. Estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seal_repro.errors import UserError

# Parameter counts of models the shipped specs name (so `plan` works without downloading configs).
KNOWN_PARAMS = {
    "embedded": 134_515_008,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
}


@dataclass
class Plan:
    name: str
    params: int
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (what, amount, unit/note)
    train_tokens: float = 0.0
    train_flops: float = 0.0
    gen_tokens: float = 0.0
    gen_flops: float = 0.0
    parts: list["Part"] = field(default_factory=list)  # the work per stage, for the GPU plan (render_gpu)
    models: list[tuple[str, str]] = field(default_factory=list)  # (role, name): the student, and a separate writer
    workers: int = 1  # the spec's executor workers (the GPU plan's default)

    def add(self, what: str, amount: float, note: str = "") -> None:
        self.rows.append((what, amount, note))

    @property
    def flops(self) -> float:
        return self.train_flops + self.gen_flops

    def work(self, part: "Part") -> "Part":
        """Record `part` (and its tokens in the totals)."""
        self.parts.append(part)
        self.train_tokens += part.lora_tokens + part.full_tokens
        self.gen_tokens += part.prompt_tokens + part.new_tokens
        return part

    def flops_from_parts(self) -> None:
        self.train_flops = sum(p.train_flops for p in self.parts)
        self.gen_flops = sum(p.gen_flops for p in self.parts)

    def render(self, flops_per_second: float | None) -> str:
        lines = [f"plan for {self.name} (N = {self.params / 1e6:,.1f}M parameters)"]
        for what, amount, note in self.rows:
            lines.append(f"  {what:<38} {amount:>16,.0f}  {note}")
        lines += [
            f"  {'training tokens':<38} {self.train_tokens:>16,.0f}",
            f"  {'generated + prompt tokens':<38} {self.gen_tokens:>16,.0f}",
            f"  {'training FLOPs':<38} {self.train_flops:>16.3e}",
            f"  {'generation FLOPs':<38} {self.gen_flops:>16.3e}",
            f"  {'total FLOPs':<38} {self.flops:>16.3e}",
        ]
        if flops_per_second:
            lines.append(f"  time at {flops_per_second:.3g} FLOP/s: {self.flops / flops_per_second / 3600:,.2f} h "
                         f"({self.flops / flops_per_second:,.0f} s)")
        return "\n".join(lines)


def model_params(model) -> int:
    if model.num_params:
        return model.num_params
    key = "embedded" if model.source == "embedded" else model.id
    if key in KNOWN_PARAMS:
        return KNOWN_PARAMS[key]
    raise UserError(f"model: parameter count of {model.name!r} unknown; set model.num_params for `plan`")


# -- the GPU plan: work per stage, converted to GPU-hours and wall-hours ------------------------------------------
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Part:
    """One piece of a stage's work, in the units the time model converts (`Hardware.seconds`).

    `parallel`: the work is `jobs` equal, independent jobs (inner-loop rounds, continual sequences, CPT conditions)
    that the executor spreads over the workers; otherwise it runs in the stage's own process on one GPU whatever the
    workers (self-edit sampling, policy SFT), or over `gpus` GPUs together (CPT's distributed training). Parts of one
    `group` are jobs of one executor call, scheduled together (longest first)."""

    stage: str
    what: str
    model: str  # the model's name (the student `model:`, or `self_edit.writer`)
    params: int
    lora_tokens: float = 0.0  # trained through a LoRA: 4N FLOPs a token
    full_tokens: float = 0.0  # full fine-tuning: 6N a token
    prompt_tokens: float = 0.0  # prefilled before generating: 2N a token, compute-bound
    new_tokens: float = 0.0  # generated: 2N a token; time from the decode model (steps x step time)
    decode_steps: float = 0.0  # sequential decode steps, each `batch` sequences wide
    batch: int = 1
    jobs: int = 1
    parallel: bool = False
    group: str | None = None
    gpus: int = 1
    rate: str = "train"  # which training rate: train (inner loop, SFT) or cpt (the CPT step's)
    backend: str = "hf"  # what decodes: hf (generate in the process) or openai (a vLLM server)
    dtype_bytes: int = 2

    @property
    def train_flops(self) -> float:
        return 4 * self.params * self.lora_tokens + 6 * self.params * self.full_tokens

    @property
    def gen_flops(self) -> float:
        return 2 * self.params * (self.prompt_tokens + self.new_tokens)

    @property
    def flops(self) -> float:
        return self.train_flops + self.gen_flops


def decode_part(stage: str, what: str, model: str, params: int, *, samples: float, prompt: float, new: float,
                batch: int, **kw) -> Part:
    """Generation of `samples` sequences (`prompt` tokens in, at most `new` out each) in batches of `batch`: each
    batch decodes for `new` steps (it waits for its longest sample)."""
    b = max(1, min(int(batch), math.ceil(samples))) if samples else 1
    return Part(stage, what, model, params, prompt_tokens=samples * prompt, new_tokens=samples * new,
                decode_steps=math.ceil(samples / b) * new if samples else 0.0, batch=b, **kw)


ASSUMED_MFU = 0.4


@dataclass(frozen=True)
class Hardware:
    """What converts a `Part` into seconds on one device.

    Training and prefill: FLOPs / `train_flops_per_s` (`cpt_flops_per_s` for CPT's steps when measured).
    Decoding is memory-bound: a step of B sequences reads every weight once, so it takes
    max(params x bytes / `hbm_bytes_per_s`, 2 x params x B / `peak_flops_per_s`) (the KV cache's reads and the
    attention's length terms are left out: a lower bound); measured rates (`decode`: (batch, tokens/s) pairs of a
    model of `decode_params` parameters, from `seal-repro bench gpu`) replace it, scaled by the parameter count.
    Without either (a CPU): generation at the training FLOP rate, as `plan` always counted it."""

    name: str
    about: str
    train_flops_per_s: float
    peak_flops_per_s: float | None = None
    hbm_bytes_per_s: float | None = None
    cpt_flops_per_s: float | None = None
    decode: dict = field(default_factory=dict)  # backend (hf / openai) -> ((batch, tokens/s), ...)
    decode_params: int | None = None

    def step_seconds(self, part: Part) -> float | None:
        """Seconds of one decode step of `part.batch` sequences (None: no decode model, generation as FLOPs)."""
        points = self.decode.get(part.backend) or self.decode.get("hf")
        if points:
            pts = sorted(points)
            steps = [(b, b / r) for b, r in pts]  # a step of b sequences produced b tokens
            scale = part.params / (self.decode_params or part.params)
            b = part.batch
            if b <= steps[0][0]:
                s = steps[0][1]  # memory-bound: a narrower batch takes no less
            elif b >= steps[-1][0]:
                s = steps[-1][1] * b / steps[-1][0]  # past the widest measured: at most linear
            else:
                (b0, s0), (b1, s1) = next((lo, hi) for lo, hi in zip(steps, steps[1:]) if lo[0] <= b <= hi[0])
                s = s0 + (s1 - s0) * (b - b0) / (b1 - b0)
            return s * scale
        if self.hbm_bytes_per_s is None:
            return None
        compute = 2 * part.params * part.batch / (self.peak_flops_per_s or self.train_flops_per_s)
        return max(part.params * part.dtype_bytes / self.hbm_bytes_per_s, compute)

    def seconds(self, part: Part) -> float:
        """Seconds of `part` on one device (all its jobs one after another)."""
        rate = self.cpt_flops_per_s if part.rate == "cpt" and self.cpt_flops_per_s else self.train_flops_per_s
        s = part.train_flops / rate + 2 * part.params * part.prompt_tokens / self.train_flops_per_s
        step = self.step_seconds(part)
        s += 2 * part.params * part.new_tokens / self.train_flops_per_s if step is None else part.decode_steps * step
        return s


def _preset(name: str, about: str, peak: float, hbm: float) -> Hardware:
    return Hardware(name, f"{about}: bf16 dense peak {peak / 1e12:,.0f} TFLOP/s, HBM {hbm / 1e12:.2f} TB/s (data "
                    f"sheet); training at MFU {ASSUMED_MFU} (assumed, not measured) = "
                    f"{ASSUMED_MFU * peak / 1e12:,.0f} TFLOP/s", ASSUMED_MFU * peak, peak, hbm)


CPU_FLOPS_PER_S = 125e9  # a LoRA step of the 135M model on 2 CPU cores (measured)
GPU_PRESETS = {
    "h100": _preset("h100", "H100 SXM", 989e12, 3.35e12),
    "h200": _preset("h200", "H200", 989e12, 4.8e12),
    "cpu-2core": Hardware("cpu-2core", f"2 CPU cores: {CPU_FLOPS_PER_S:.3g} FLOP/s (measured: a LoRA step of the "
                          "135M model), generation counted as FLOPs at that rate", CPU_FLOPS_PER_S),
}


def gpu_preset(name: str) -> Hardware:
    key = name.lower()
    if key not in GPU_PRESETS:
        raise UserError(f"--gpu {name}: unknown preset (known: {', '.join(GPU_PRESETS)})")
    return GPU_PRESETS[key]


def _positive(data: dict, key: str) -> float | None:
    v = data.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 \
        else None


def rates_from_bench(path, base: Hardware | None = None) -> Hardware:
    """Rates measured by `seal-repro bench gpu --out FILE`: training FLOP/s = engine_train_mfu x peak_flops_per_s
    (CPT: cpt_train_mfu_plain, else _checkpointed), decoding from hf_generate_tokens_per_s_b<B> (the hf backend and
    the rounds' answers) and vllm_generate_tokens_per_s_b<B> (the openai backend), at the bench model's n_params.
    What the file lacks comes from `base` (--gpu); without one, a missing training rate is an error."""
    import json
    import re
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"--rates {path}: cannot read a bench file ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})")
    if not isinstance(data, dict):
        raise UserError(f"--rates {path}: not a JSON object (the file `seal-repro bench gpu --out FILE` writes)")
    peak = _positive(data, "peak_flops_per_s")
    mfu = _positive(data, "engine_train_mfu")
    train = peak * mfu if peak and mfu else None
    cpt_mfu = _positive(data, "cpt_train_mfu_plain") or _positive(data, "cpt_train_mfu_checkpointed")
    decode = {}
    for backend, prefix in (("hf", "hf_generate_tokens_per_s_b"), ("openai", "vllm_generate_tokens_per_s_b")):
        pts = tuple(sorted((int(m.group(1)), _positive(data, k)) for k in data
                           if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", k)) and _positive(data, k)))
        if pts:
            decode[backend] = pts
    if train is None and base is None:
        raise UserError(f"--rates {path}: no training rate (peak_flops_per_s and engine_train_mfu); pass --gpu "
                        "PRESET to fill what the file lacks")
    n_params = data.get("n_params") if isinstance(data.get("n_params"), int) and data.get("n_params") > 0 else None
    if decode and n_params is None:
        raise UserError(f"--rates {path}: generation rates without n_params (the bench model's size)")
    gpu = str(data.get("gpu", "?"))
    about = (f"measured by `seal-repro bench gpu` ({path}: config {data.get('config', '?')}, gpu {gpu}"
             f"{', ' + str(n_params) + ' params' if n_params else ''}): "
             + (f"training {train / 1e12:,.3g} TFLOP/s (MFU {mfu:.3g})" if train else "training from " + base.name)
             + (", decoding " + "/".join(f"{b}:{', '.join(f'b{x}' for x, _ in p)}" for b, p in decode.items())
                if decode else ", decoding from " + (base.name if base else "FLOPs")))
    return Hardware(
        f"rates:{Path(path).name}", about,
        train or base.train_flops_per_s,
        peak or (base.peak_flops_per_s if base else None),
        base.hbm_bytes_per_s if base else None,
        (peak * cpt_mfu) if peak and cpt_mfu else (base.cpt_flops_per_s if base else None),
        decode or (dict(base.decode) if base else {}),
        n_params if decode else (base.decode_params if base else None))


def _makespan(durations: list[float], workers: int) -> float:
    """Wall time of independent jobs on `workers` slots, longest first to the least loaded slot."""
    import heapq

    if workers <= 1 or len(durations) <= 1:
        return sum(durations) if workers <= 1 else max(durations, default=0.0)
    if len(durations) > 200_000:  # many small jobs: the balanced share
        return max(sum(durations) / workers, max(durations))
    slots = [0.0] * min(workers, len(durations))
    for d in sorted(durations, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + d)
    return max(slots)


@dataclass
class StageTime:
    stage: str
    what: str
    model: str
    jobs: int
    parallel: bool
    flops: float
    new_tokens: float
    gpu_seconds: float
    wall_seconds: float | None  # None: a job of the group whose wall time is on its first part's row


def gpu_times(parts: list[Part], hw: Hardware, workers: int) -> list[StageTime]:
    """Each part's GPU-seconds (busy device time) and wall-seconds with `workers` (a group's wall time is that of
    its jobs scheduled together, given to its first part; the others get None)."""
    out, groups = [], {}
    for p in parts:
        sec = hw.seconds(p)
        if p.parallel and p.group is None:
            wall = math.ceil(p.jobs / max(workers, 1)) * sec / max(p.jobs, 1)
        elif p.parallel:
            groups.setdefault(p.group, []).append((len(out), p, sec))
            wall = None
        else:
            wall = sec / p.gpus
        out.append(StageTime(p.stage, p.what, p.model, p.jobs, p.parallel, p.flops, p.new_tokens, sec, wall))
    for members in groups.values():
        durations = [sec / p.jobs for _, p, sec in members for _ in range(p.jobs)]
        out[members[0][0]].wall_seconds = _makespan(durations, workers)
    return out


def _h(seconds: float) -> str:
    """Hours, 10 wide: 3 decimals below 100 h."""
    h = seconds / 3600
    return f"{h:>10,.3f}" if h < 100 else f"{h:>10,.1f}"


def render_gpu(plan: "Plan", hw: Hardware, workers: int) -> str:
    """The GPU plan's table: per stage and part, FLOPs, generated tokens, GPU-hours and wall-hours."""
    times = gpu_times(plan.parts, hw, workers)
    lines = [f"GPU plan ({hw.name}; estimates): {hw.about}", f"  workers: {workers} (inner-loop rounds, CPT "
             "conditions and continual sequences are spread over them; self-edit sampling and policy SFT run in "
             "the stage's process on one GPU)"]
    lines += [f"  {role}: {name}" for role, name in plan.models]
    head = f"  {'stage':<10} {'part':<34} {'model':<8} {'jobs':>6} {'FLOPs':>10} {'gen tokens':>14} " \
           f"{'GPU-h':>10} {'wall-h':>10}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    total_gpu = total_wall = 0.0
    stages: dict[str, list[StageTime]] = {}
    for t in times:
        stages.setdefault(t.stage, []).append(t)
    for stage, rows in stages.items():
        for t in rows:
            jobs = f"{t.jobs:,}" if t.parallel else "1"
            lines.append(f"  {stage:<10} {t.what:<34} {t.model:<8} {jobs:>6} {t.flops:>10.3e} "
                         f"{t.new_tokens:>14,.0f} {_h(t.gpu_seconds)} "
                         + (_h(t.wall_seconds) if t.wall_seconds is not None else f"{'(above)':>10}"))
        g, w = sum(t.gpu_seconds for t in rows), sum(t.wall_seconds or 0.0 for t in rows)
        total_gpu, total_wall = total_gpu + g, total_wall + w
        lines.append(f"  {stage:<10} {'= stage':<34} {'':<8} {'':>6} {sum(t.flops for t in rows):>10.3e} "
                     f"{sum(t.new_tokens for t in rows):>14,.0f} {_h(g)} {_h(w)}")
    lines.append(f"  {'all':<10} {'= total':<34} {'':<8} {'':>6} {sum(t.flops for t in times):>10.3e} "
                 f"{sum(t.new_tokens for t in times):>14,.0f} {_h(total_gpu)} {_h(total_wall)}")
    lines.append(f"  GPU-h: busy device time; wall-h: with {workers} worker(s); holding {workers} GPU(s) for the wall "
                 f"time: {workers * total_wall / 3600:,.2f} GPU-h")
    return "\n".join(lines)

