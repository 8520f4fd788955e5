"""`seal-repro plan SPEC`: what a spec will cost before running it."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="estimate generations, inner-loop rounds, training tokens, FLOPs and time of a spec",
        description=__doc__,
    )
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--section", default=None, help="key of the file holding the spec (e.g. knowledge in params.yaml)")
    p.add_argument("--flops-per-second", type=float, default=125e9,
                   help="throughput to convert FLOPs into time (default 125e9: a LoRA step of the 135M model on 2 CPU cores)")
    p.set_defaults(func=run)


def plan_spec(spec):
    """The cost `Plan` (seal_repro.plan) of a spec of either domain."""
    # Imported on use, like every command's work, so that building the CLI parser (`--help`) stays light.
    if spec.domain == "knowledge":
        from seal_repro.knowledge.plan import plan_knowledge

        return plan_knowledge(spec)
    from seal_repro.fewshot.plan import plan_fewshot

    return plan_fewshot(spec)


def run(args) -> int:
    from seal_repro.spec import load_spec

    spec = load_spec(args.spec, section=args.section)
    print(plan_spec(spec).render(args.flops_per_second))
    return 0
