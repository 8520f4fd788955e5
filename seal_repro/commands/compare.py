"""`seal-repro compare A B`: paired comparison of two knowledge results folders, condition by condition.

Both runs must have scored the same passages (same data spec and seed); the test pairs per-passage
accuracies (sign-flip permutation p-value, bootstrap CI of the mean difference).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("compare", help="paired test of two knowledge results folders (e.g. an ablation vs the default)",
                       description=__doc__)
    p.add_argument("a", help="results folder A (holding records.jsonl)")
    p.add_argument("b", help="results folder B")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _per_passage(path) -> dict[str, dict[str, float]]:
    from collections import defaultdict
    from pathlib import Path

    from seal_repro.errors import UserError
    from seal_repro.io import read_jsonl

    f = Path(path) / "records.jsonl"
    if not f.exists():
        raise UserError(f"{f}: no such file (give a results folder written by the report stage)")
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in read_jsonl(f):
        if r["correct"] is not None:
            sums[r["condition"]][r["passage_id"]].append(float(r["correct"]))
    return {c: {p: sum(v) / len(v) for p, v in ps.items()} for c, ps in sums.items()}


def run(args) -> int:
    from seal_repro.stats import paired_test

    a, b = _per_passage(args.a), _per_passage(args.b)
    print(f"A = {args.a}\nB = {args.b}")
    print(f"{'condition':<20} {'A':>7} {'B':>7} {'B-A':>7} {'95% CI':>17} {'p':>7} passages")
    for cond in [c for c in a if c in b]:
        common = sorted(set(a[cond]) & set(b[cond]))
        if not common:
            continue
        xa, xb = [a[cond][p] for p in common], [b[cond][p] for p in common]
        t = paired_test(xb, xa, args.resamples, args.seed)
        print(f"{cond:<20} {sum(xa)/len(xa):>7.3f} {sum(xb)/len(xb):>7.3f} {t.diff:>+7.3f} "
              f"[{t.low:+.3f}, {t.high:+.3f}] {t.p_value:>7.4f} {len(common)}")
    return 0
