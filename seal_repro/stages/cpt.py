"""Stage cpt: continued pretraining on many passages at once (paper Table 2, n = 200 column). For each cpt condition one model is
trained on the corpus of all `cpt.n_passages` evaluation passages (LoRA: paper v1; full fine-tuning: paper v2)
and answers all of their questions. Writes records.jsonl (one graded answer per question and condition) and
summary.json (method, protocol version, corpus sizes, training stats).
"""

from __future__ import annotations

import gc
from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.stages._common import load_resolved, set_threads, stage_main, write_skipped


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--self-edits", required=True, help="folder written by self_edits (the base model's)")
    p.add_argument("--conditions", required=True, help="folder holding seal_iter<i>/ (the SEAL policy's self-edits)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-memo", action="store_true", help="recompute every condition even if memoized")


def _edits(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in read_jsonl(path):
        out.setdefault(row["passage_id"], []).append(row["text"])
    return out


def run(args):
    spec = load_resolved(args.spec_dir)
    out = Path(args.out)
    if spec.cpt is None:
        write_skipped(out, "cpt: no cpt section in the spec")
        return
    set_threads()
    from seal_repro import models
    from seal_repro.engine import LoraEngine
    from seal_repro.executor import local_executor
    from seal_repro.knowledge.cpt import FullEngine, corpus, examples, train_config
    from seal_repro.lmeval_glue import QAScorer
    from seal_repro.memo import Memo, fingerprint_model_dir, key_of
    from seal_repro.stages.adapt_eval import grade_records

    cpt, ev = spec.cpt, spec.evaluation
    data, model_dir = Path(args.data), Path(args.model)
    passages = [Passage.from_dict(d) for d in read_jsonl(data / "passages.jsonl")][: cpt.n_passages]
    by_id = {p.id: p for p in passages}
    base_edits = _edits(Path(args.self_edits) / "self_edits.jsonl")
    seal_edits = _edits(Path(args.conditions) / f"seal_iter{spec.rl.iterations}" / "self_edits.jsonl") \
        if "seal" in cpt.conditions else {}
    qids = [q.id for p in passages for q in p.questions]
    cfg = train_config(cpt, spec.inner_loop)
    lora = cpt.lora or spec.inner_loop.lora
    fingerprint = fingerprint_model_dir(model_dir)
    memo = Memo(enabled=not args.no_memo)
    plan = []  # (condition, corpus, memo key, memoized result or None)
    for cond in cpt.conditions:
        seqs = corpus(cond, passages, base_edits, seal_edits, spec)
        key = key_of({
            "cpt": cpt.method, "model": fingerprint, "dtype": spec.model.dtype, "chat_template": spec.model.chat_template,
            "sequences": seqs, "lora": lora.model_dump(mode="json") if cpt.method == "lora" else None,
            "train": cfg.__dict__, "seed": spec.seed, "questions": qids, "answer_prompt": ev.answer_prompt,
            "max_new_tokens": ev.max_new_tokens,
        })
        plan.append((cond, seqs, key, memo.get(key)))
    todo = [i for i, (*_, done) in enumerate(plan) if done is None]
    kit = {}

    def build():
        kit.clear()
        gc.collect()
        model, tok = models.load(spec.model, model_dir)
        kit["engine"] = FullEngine(model, tok) if cpt.method == "full" else LoraEngine(model, tok, lora)
        kit["scorer"] = QAScorer(kit["engine"].base_model, tok, questions_file=data / "questions.jsonl",
                                 answer_prompt=ev.answer_prompt, max_new_tokens=ev.max_new_tokens,
                                 batch_size=ev.batch_size, chat_template=spec.model.chat_template)

    def train_and_score(j: int) -> dict:
        _, seqs, _, _ = plan[todo[j]]
        if cpt.method == "full" and kit.get("trained"):
            build()  # full fine-tuning changed the weights: the next condition starts from the base model again
        engine = kit["engine"]
        engine.reset(spec.seed)
        train = None
        if seqs:
            st = engine.train(examples(seqs), cfg, seed=spec.seed)
            kit["trained"] = True
            train = {"steps": st.steps, "real_tokens": st.real_tokens, "seconds": round(st.seconds, 3),
                     "final_loss": st.final_loss}
        return {"train": train, "answers": kit["scorer"].score(qids)}

    if todo:
        build()
        # The conditions are independent: the local executor's forked copies train them side by side.
        for j, result in local_executor(spec).map(train_and_score, len(todo), kit["engine"].device,
                                                  describe=lambda j: f"cpt condition {plan[todo[j]][0]}"):
            cond, seqs, key, _ = plan[todo[j]]
            memo.put(key, result)
            plan[todo[j]] = (cond, seqs, key, result)
    records, stats = [], {}
    for cond, seqs, _, result in plan:
        answers = {a["question_id"]: a for a in result["answers"]}
        rounds = [{"condition": cond, "passage_id": p.id, "self_edit_index": 0, "repeat": 0,
                   "answers": [answers[q.id] for q in p.questions]} for p in passages]
        records += [{**r, "setting": "cpt"} for r in grade_records(spec, rounds, by_id)]
        stats[cond] = {"sequences": len(seqs), "train": result["train"]}
        print(f"cpt {cond}: {len(seqs)} training sequences, {len(qids)} questions")
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {
        "skipped": False, "method": cpt.method, "protocol_version": cpt.protocol_version,
        "n_passages": len(passages), "conditions": stats, "memo_hits": memo.hits, "memo_misses": memo.misses,
    })


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
