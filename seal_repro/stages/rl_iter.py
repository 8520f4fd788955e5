"""Stage rl_iter: one ReST-EM iteration of SEAL's outer loop (dvc.yaml runs rl_iter@1, rl_iter@2, … in order).

Reads the previous iteration's policy (--prev; iteration 1 starts from the base model), samples and rewards
self-edits for the training passages, fine-tunes the policy on the kept ones, and writes:
  policy/          a PEFT LoRA over the base model: PeftModel.from_pretrained(base, "<out>/policy")
  samples.jsonl    every sampled self-edit with its accuracy, baseline, reward and whether it was kept
  records.jsonl    every graded answer behind those rewards
  summary.json     the iteration's metrics (mean reward, share beating the baseline, mean self-edit length)
An iteration past rl.iterations writes only summary.json {"active": false}.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.errors import UserError
from seal_repro.io import read_json, read_jsonl, write_json, write_jsonl
from seal_repro.stages._common import load_resolved, set_threads, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--setup", required=True, help="folder written by rl_setup")
    p.add_argument("--iteration", required=True, type=int)
    p.add_argument("--prev", required=True, help="the previous iteration's folder (iter0: the base model)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-memo", action="store_true", help="recompute every round even if memoized")


def _clear(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def run(args):
    setup, out, k = Path(args.setup), Path(args.out), args.iteration
    plan = read_json(setup / f"iter{k}.json")
    _clear(out)
    if not plan["active"]:
        write_json(out / "summary.json", {"iteration": k, "active": False})
        print(f"rl iteration {k}: beyond rl.iterations, skipped")
        return
    prev = Path(args.prev)
    if not read_json(prev / "summary.json").get("active"):
        raise UserError(f"rl iteration {k}: the previous iteration ({prev}) did not run")
    set_threads()
    from seal_repro.engine import LoraEngine
    from seal_repro.executor import make_executor
    from seal_repro.knowledge import rl as R
    from seal_repro.knowledge.inner_loop import peak_memory_of, run_rounds
    from seal_repro.lmeval_glue import QAScorer
    from seal_repro.memo import Memo
    from seal_repro.spec.rl import RLSpec
    from seal_repro.stages.adapt_eval import grade_records

    spec = load_resolved(args.spec_dir)
    rl = RLSpec.model_validate({**plan["rl"], "iterations": k})  # the settings this iteration was planned with
    model_dir = Path(args.model)
    prev_policy = prev / "policy" if k > 1 else None
    executor = make_executor(spec, model_dir=model_dir, questions_file=setup / "questions.jsonl",
                             policy_dir=prev_policy)
    passages = [Passage.from_dict(d) for d in read_jsonl(setup / "passages.jsonl")]
    by_id = {p.id: p for p in passages}

    model, tok = R.load_policy(spec, model_dir, prev_policy)
    samples = R.sample_self_edits(model, tok, spec, passages, rl.k, seed=spec.seed + R.sample_seed_offset(k))
    texts = {(s["passage_id"], s["index"]): s["text"] for s in samples}
    edits: dict[str, list[str]] = {}
    for s in samples:
        edits.setdefault(s["passage_id"], []).append(s["text"])

    inner = LoraEngine(model, tok, spec.inner_loop.lora)
    ev = spec.evaluation
    scorer = QAScorer(inner.base_model, tok, questions_file=setup / "questions.jsonl", answer_prompt=ev.answer_prompt,
                      max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, chat_template=spec.model.chat_template)
    memo = Memo(enabled=not args.no_memo)
    results = run_rounds(R.rl_rounds(passages, edits, spec, rl), inner, scorer.score, spec,
                         R.policy_fingerprint(model_dir, prev_policy), memo, desc=f"rl iteration {k}", executor=executor)
    records = grade_records(spec, results, by_id)
    rows = R.score_samples(records, rl)
    kept = R.keep_rows(rows, rl)
    kept_keys = {(r["passage_id"], r["index"]) for r in kept}
    lengths = [len(tok(texts[(r["passage_id"], r["index"])], add_special_tokens=False)["input_ids"]) for r in rows]
    for r, n in zip(rows, lengths):
        r.update(text=texts[(r["passage_id"], r["index"])], tokens=n, kept=(r["passage_id"], r["index"]) in kept_keys)

    # The policy: a fresh LoRA on the sampling model (previous policy merged in), trained on the kept self-edits.
    model = inner.peft_model.unload()
    examples = R.sft_examples(kept, texts, by_id, spec, tok)
    sft = None
    if examples or prev_policy is None:
        policy = LoraEngine(model, tok, rl.sft.lora)
        policy.reset(spec.seed + k)
        if examples:
            stats = policy.train(examples, R.sft_config(rl), seed=spec.seed + k)
            sft = {"examples": len(examples), "steps": stats.steps, "seconds": round(stats.seconds, 3),
                   "final_loss": stats.final_loss, "real_tokens": stats.real_tokens}
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            policy.save_adapter(tmp)
            R.stack_adapters(prev_policy, Path(tmp), out / "policy")
    else:  # nothing kept: this iteration's policy is the previous one
        shutil.copytree(prev_policy, out / "policy")

    write_jsonl(out / "samples.jsonl", rows)
    write_jsonl(out / "records.jsonl", records)
    metrics = R.iteration_metrics(rows, kept, lengths)
    write_json(out / "summary.json", {
        "iteration": k, "active": True, "metrics": metrics, "sft": sft, "policy_trained": sft is not None,
        "training_passages": len(passages), "rounds": len(results), "memo_hits": memo.hits,
        "memo_misses": memo.misses, "rl": rl.model_dump(mode="json", exclude={"iterations"}), **peak_memory_of(results),
    })
    print(f"rl iteration {k}: {len(rows)} self-edits, mean reward {metrics['mean_reward']:.3f}, "
          f"{metrics['share_beating_baseline']:.0%} beat the baseline, {len(kept)} kept -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
