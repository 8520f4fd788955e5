"""`seal-repro plan SPEC`: what a spec will cost before running it.

With --gpu PRESET, --rates FILE or --workers N it also prints a GPU plan: per stage and part, FLOPs, generated
tokens, GPU-hours (busy device time) and wall-hours with N workers. Estimates, not measurements: training and
prefill run at a sustained FLOP rate (a preset: the data sheet's bf16 dense peak x an assumed MFU of 0.4; a rates
file: the MFU `seal-repro bench gpu --out FILE` measured), and decoding (self-edits, answers) by a memory-bound step
model — a step of B sequences reads every weight once: max(params x 2 bytes / HBM bandwidth, 2 x params x B / peak)
— or the bench's measured tokens/s. Inner-loop rounds, CPT conditions and continual sequences are spread over the
workers; self-edit sampling and the policy SFT are not (they run in the stage's process, on one GPU).
"""

from __future__ import annotations


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "plan", help="estimate generations, inner-loop rounds, training tokens, FLOPs and time of a spec (--gpu: "
        "GPU-hours per stage)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--section", default=None, help="key of the file holding the spec (e.g. knowledge in params.yaml)")
    p.add_argument("--flops-per-second", type=float, default=125e9,
                   help="throughput to convert FLOPs into time (default 125e9: a LoRA step of the 135M model on 2 "
                   "CPU cores)")
    p.add_argument("--gpu", default=None, metavar="PRESET",
                   help="GPU plan on a named device: h100 (H100 SXM: bf16 dense peak 989e12 FLOP/s, HBM 3.35e12 B/s), "
                   "h200 (989e12 FLOP/s, 4.8e12 B/s) — training at an assumed MFU of 0.4, not a measurement — or "
                   "cpu-2core (125e9 FLOP/s, measured)")
    p.add_argument("--rates", default=None, metavar="FILE",
                   help="GPU plan at the rates `seal-repro bench gpu --out FILE` measured (training MFU x peak, "
                   "generation tokens/s); what the file lacks comes from --gpu")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="devices running inner-loop rounds (and CPT conditions, continual sequences) side by side; "
                   "default: the spec's executor workers (Ray actors; forked copies on a CPU), else 1")
    p.set_defaults(func=run)


def plan_spec(spec):
    """The cost `Plan` (seal_repro.plan) of a spec of either domain."""
    # Imported on use, like every command's work, so that building the CLI parser (`--help`) stays light.
    if spec.domain == "knowledge":
        from seal_repro.knowledge.plan import plan_knowledge

        return plan_knowledge(spec)
    from seal_repro.fewshot.plan import plan_fewshot

    return plan_fewshot(spec)


def hardware_of(args):
    """The `Hardware` of --gpu / --rates, or None (no GPU plan asked for; --workers alone: --flops-per-second)."""
    from seal_repro.plan import CPU_FLOPS_PER_S, GPU_PRESETS, Hardware, gpu_preset, rates_from_bench

    base = gpu_preset(args.gpu) if args.gpu is not None else None
    if args.rates is not None:
        return rates_from_bench(args.rates, base)
    if base is None and args.workers is not None:
        if args.flops_per_second == CPU_FLOPS_PER_S:
            return GPU_PRESETS["cpu-2core"]
        return Hardware("custom", f"{args.flops_per_second:.3g} FLOP/s (--flops-per-second), generation as FLOPs",
                        args.flops_per_second)
    return base


def run(args) -> int:
    from seal_repro.errors import UserError
    from seal_repro.plan import render_gpu
    from seal_repro.spec import load_spec

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: must be at least 1 (got {args.workers})")
    hw = hardware_of(args)  # a bad preset or rates file fails before the spec is read
    spec = load_spec(args.spec, section=args.section)
    plan = plan_spec(spec)
    print(plan.render(None if hw is not None else args.flops_per_second))
    if hw is not None:
        print()
        print(render_gpu(plan, hw, args.workers or plan.workers))
    return 0
