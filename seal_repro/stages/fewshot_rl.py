"""Stage fewshot_rl: ReST-EM on the training tasks (the SEAL condition's outer loop), then the trained
policy samples `self_edit.n_eval` self-edits for every evaluation task.

Writes policy/ (a PEFT adapter: `PeftModel.from_pretrained(base, "build/fewshot/rl/policy")`),
records.jsonl (one rewarded round per sampled training self-edit), self_edits.jsonl, summary.json.
"""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.engine import LoraEngine
from seal_repro.executor import local_executor
from seal_repro.fewshot.inner_loop import run_rounds
from seal_repro.fewshot.rl import rest_em, sample_self_edits
from seal_repro.io import read_json, read_jsonl, write_json, write_jsonl
from seal_repro.memo import Memo, fingerprint_model_dir
from seal_repro.stages._common import load_resolved, set_threads, stage_main
from seal_repro.stages._fewshot import PROMPTS, SELF_EDITS, ArcPredictor, read_tasks, sampling_key
from seal_repro.stages.fewshot_self_edits import EVAL_SEED_OFFSET


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--tasks", required=True, help="folder written by fewshot_tasks")
    p.add_argument("--base-self-edits", required=True,
                   help="folder written by fewshot_self_edits: reused when RL leaves the policy untrained")
    p.add_argument("--out", required=True, help="folder for policy/, records.jsonl, self_edits.jsonl, summary.json")
    p.add_argument("--no-memo", action="store_true", help="recompute every round even if memoized")


def reuse_base_samples(folder: Path, model_dir: Path, eval_tasks, spec) -> tuple[list[dict], bool]:
    """An untrained policy (adapter B = 0) is the base model; when fewshot_self_edits sampled that model with
    the same settings and seeds (equal sampling keys), its rows are exactly what the policy would write."""
    try:
        key = read_json(folder / "summary.json").get("sampling_key")
        rows = read_jsonl(folder / SELF_EDITS)
    except (OSError, ValueError):
        return [], False
    same = key == sampling_key(spec, model_dir, eval_tasks, spec.seed + EVAL_SEED_OFFSET)
    return (rows, True) if same and rows else ([], False)


def run(args):
    set_threads()
    spec = load_resolved(args.spec_dir)
    out = Path(args.out)
    if "seal" not in spec.conditions:
        write_jsonl(out / "records.jsonl", [])
        write_jsonl(out / SELF_EDITS, [])
        write_json(out / "summary.json", {"skipped": True})
        (out / "policy").mkdir(parents=True, exist_ok=True)
        print("seal: not in spec.conditions, skipped")
        return
    model_dir = Path(args.model)
    train_tasks, eval_tasks = read_tasks(args.tasks, "train"), read_tasks(args.tasks, "eval")
    # Two copies of the base model: one carries the per-round TTT adapters, the other the policy.
    model, tok = models.load(spec.model, model_dir)
    ttt = LoraEngine(model, tok, spec.inner_loop.lora)
    policy_model, policy_tok = models.load(spec.model, model_dir)
    policy = LoraEngine(policy_model, policy_tok, spec.rl.sft.lora)
    ev = spec.evaluation
    predictor = ArcPredictor(ttt.base_model, tok, prompts_file=Path(args.tasks) / PROMPTS,
                             max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                             chat_template=spec.model.chat_template)
    memo = Memo(enabled=not args.no_memo)
    fingerprint = fingerprint_model_dir(model_dir)
    result = rest_em(spec, train_tasks, policy,
                     lambda rounds: run_rounds(rounds, ttt, predictor, spec, fingerprint, memo, desc="rl rounds",
                                               executor=local_executor(spec)))
    policy.save_adapter(out / "policy")
    rows, reused = [], False
    if not result.trained:
        rows, reused = reuse_base_samples(Path(args.base_self_edits), model_dir, eval_tasks, spec)
    if not reused:
        rows = sample_self_edits(policy.peft_model, policy_tok, eval_tasks, spec.self_edit.n_eval, spec,
                                 seed=spec.seed + EVAL_SEED_OFFSET)
    write_jsonl(out / "records.jsonl", result.records)
    write_jsonl(out / SELF_EDITS, rows)
    rewards = [r["reward"] for r in result.records]
    write_json(out / "summary.json", {
        "skipped": False, "iterations": result.iterations, "policy_trained": result.trained,
        "train_success_rate": sum(rewards) / len(rewards) if rewards else None,
        "eval_self_edits": "base model's (policy untrained, so identical)" if reused else "sampled from the policy",
        "memo_hits": memo.hits, "memo_misses": memo.misses, "lm_eval_task_version": predictor.version,
    })
    print(f"rl: {len(rewards)} rounds, {sum(rewards)} rewarded, policy trained: {result.trained} -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
