"""Stage continual: sequential self-edits into one model (paper §Limitations, catastrophic forgetting).

For each of `continual.sequences` random orders of `continual.n_passages` evaluation passages, the model
(the base, or the final SEAL policy with `start: seal`) edits itself passage by passage; after each edit every
passage seen so far is scored. Writes summary.json (the mean retention matrix, its std, per-sequence matrices,
forgetting), records.jsonl (graded answers, with sequence and step) and self_edits.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.stages._common import load_resolved, set_threads, stage_main, write_skipped

EDIT_SEED_STRIDE = 1_000_003  # sequence s, step t samples with seed offset 200_000 + s * stride + t


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--rl", required=True, help="folder holding iter<i>/policy (for continual.start: seal)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-memo", action="store_true", help="recompute every sequence even if memoized")


def run(args):
    spec = load_resolved(args.spec_dir)
    out = Path(args.out)
    if spec.continual is None:
        write_skipped(out, "continual: no continual section in the spec", jsonl=("records.jsonl", "self_edits.jsonl"))
        return
    set_threads()
    from seal_repro.knowledge import continual as C
    from seal_repro.knowledge.rl import load_policy, policy_fingerprint, with_self_edits
    from seal_repro.lmeval_glue import QAScorer
    from seal_repro.memo import Memo, key_of
    from seal_repro.stages.adapt_eval import grade_records
    from seal_repro.stages.self_edits import write_self_edits

    cs, ev = spec.continual, spec.evaluation
    data, model_dir = Path(args.data), Path(args.model)
    passages = [Passage.from_dict(d) for d in read_jsonl(data / "passages.jsonl")]
    by_id = {p.id: p for p in passages}
    policy = Path(args.rl) / f"iter{spec.rl.iterations}" / "policy" if cs.start == "seal" else None
    one = with_self_edits(spec, 1)
    if cs.sampling is not None:
        one = one.model_copy(update={"self_edit": one.self_edit.model_copy(update={"sampling": cs.sampling})})
    # A whole sequence is memoized (it cannot be split: each step starts from the previous one's weights), so a
    # re-run caused by an unrelated upstream change (e.g. the RL policy, with start: base) costs nothing.
    memo, start_fp = Memo(enabled=not args.no_memo), policy_fingerprint(model_dir, policy)
    matrices, sequences, records, edits = [], [], [], []
    for s, order in enumerate(C.draw_orders(passages, cs.n_passages, cs.sequences, spec.seed)):
        key = key_of({
            "continual": s, "start": start_fp, "dtype": spec.model.dtype, "chat_template": spec.model.chat_template,
            "passages": [p.to_dict() for p in order], "self_edit": one.self_edit.model_dump(mode="json"),
            "inner_loop": spec.inner_loop.model_dump(mode="json"), "evaluation": spec.evaluation.model_dump(mode="json"),
            "seed": spec.seed,
        })
        done = memo.get(key)
        if done is not None:
            matrices.append(C.from_json(done["sequence"]["matrix"]))
            sequences.append(done["sequence"])
            records += done["records"]
            edits += done["self_edits"]
            continue
        seq_records: list[dict] = []
        model, tok = load_policy(spec, model_dir, policy)  # every sequence starts from the same model
        scorer = QAScorer(model, tok, questions_file=data / "questions.jsonl", answer_prompt=ev.answer_prompt,
                          max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                          chat_template=spec.model.chat_template)
        row = {"n": 0}

        def accuracy(seen, s=s, scorer=scorer, row=row):
            answers = {a["question_id"]: a for a in scorer.score([q.id for p in seen for q in p.questions])}
            rounds = [{"condition": "continual", "passage_id": p.id, "self_edit_index": 0, "repeat": 0,
                       "answers": [answers[q.id] for q in p.questions]} for p in seen]
            graded = grade_records(spec, rounds, by_id)
            seq_records.extend({**r, "sequence": s, "after_edits": row["n"]} for r in graded)
            row["n"] += 1
            acc = {}
            for p in seen:
                marks = [r["correct"] for r in graded if r["passage_id"] == p.id and r["correct"] is not None]
                acc[p.id] = sum(marks) / len(marks) if marks else float("nan")
            return acc

        def edit(current, passage, t, s=s, tok=tok):
            offset = 200_000 + s * EDIT_SEED_STRIDE + t
            return write_self_edits(current, tok, one, [passage], seed_offset=offset)[0]["text"]

        result = C.run_sequence(model, tok, order, spec, edit, accuracy, seed=spec.seed + 7919 * s)
        matrices.append(result["matrix"])
        seq_edits = [{**e, "sequence": s} for e in result["self_edits"]]
        sequence = {"order": result["order"], "matrix": C.to_json(result["matrix"]), "train": result["train"],
                    **C.forgetting_summary(result["matrix"])}
        memo.put(key, {"sequence": sequence, "records": seq_records, "self_edits": seq_edits})
        sequences.append(sequence)
        records += seq_records
        edits += seq_edits
        print(f"continual sequence {s}: {len(order)} edits")
    mean, std = C.mean_matrix(matrices)
    write_jsonl(out / "records.jsonl", records)
    write_jsonl(out / "self_edits.jsonl", edits)
    write_json(out / "summary.json", {
        "skipped": False, "start": cs.start, "n_passages": cs.n_passages, "sequences": cs.sequences,
        "matrix": C.to_json(mean), "matrix_std": C.to_json(std), **C.forgetting_summary(mean),
        "per_sequence": sequences, "memo_hits": memo.hits, "memo_misses": memo.misses,
    })


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
