"""SEAL for knowledge incorporation: ReST-EM on training passages, and the SEAL condition after each iteration.

Iteration i (the core loop is seal_repro/rest_em.py): the policy of iteration i-1 (iteration 0: the base model)
samples `rl.k` self-edits per training passage; each self-edit becomes `rl.repeats` inner-loop rounds on the
policy model itself (the reference's TTT server adapts the RL checkpoint, not the original base) — or, with a
separate `self_edit.writer` (teacher–student, seal_repro/knowledge/writer.py), the writer's policy samples and is
trained, and the rounds adapt the student from its own weights; its reward is
the mean adapted accuracy, or that minus the baseline's (`rl.reward`); `rl.keep` picks the self-edits the policy
is fine-tuned on. Then the new policy writes `self_edit.n` self-edits per *evaluation* passage, with the seeds the
base model's self-edits used, and the inner loop adapts the policy model on them: the SEAL row after iteration i.

Resumable without DVC's help: samples, rounds and each iteration's trained policy are memoized by content, so
a killed run, or one with more iterations, recomputes only what it had not finished.

Models on the stage's process: loaded where it samples (hf backend, on a memo miss) and where it trains the policy;
with Ray workers (which build their own kits) it drops each before the workers start, and with the openai backend
it loads none to sample (the server does).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from seal_repro import rest_em
from seal_repro.codehash import code_fingerprint
from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainExample
from seal_repro.executor import free_device_memory, make_executor
from seal_repro.io import write_json, write_jsonl
from seal_repro.knowledge.baselines import kit_scorer_version, read_passages, sample_and_kit, write_condition
from seal_repro.knowledge.grading import grade_records
from seal_repro.knowledge.inner_loop import KitRecipe, Round, ScorerFactory, peak_memory_of, plan_rounds, run_rounds
from seal_repro.policy import policy_fingerprint, stack_adapters
from seal_repro.knowledge.self_edits import by_passage, policy_prompt, rl_seed_offset, sample_k, write_self_edits
from seal_repro.knowledge.writer import Writer
from seal_repro.memo import Memo, key_of

SAMPLE_CONDITION, BASELINE_CONDITION = "rl_sample", "rl_baseline"


def with_repeats(spec, repeats: int):
    return spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"repeats": repeats})})


def rl_rounds(passages: Sequence[Passage], samples: dict[str, list[str]], spec, rl) -> list[Round]:
    """`rl.repeats` rounds per sampled self-edit, then the baseline's rounds for each passage."""
    s = with_repeats(spec, rl.repeats)
    rounds = [replace(r, condition=SAMPLE_CONDITION) for r in plan_rounds(SAMPLE_CONDITION, passages, samples, s)]
    return rounds + [replace(r, condition=BASELINE_CONDITION) for r in plan_rounds(rl.baseline, passages, {}, s)]


def _mean(values) -> float:
    graded = [float(v) for v in values if v is not None]  # None: ungraded (judge failure), never wrong
    return sum(graded) / len(graded) if graded else math.nan


def score_samples(records: Sequence[dict], samples: Sequence[rest_em.Sample], rl) -> list[rest_em.Scored]:
    """One Scored per sample: its mean accuracy over questions x repeats against the baseline's, and the reward."""
    baseline: dict[str, list] = defaultdict(list)
    correct: dict[tuple[str, int], list] = defaultdict(list)
    for r in records:
        if r["condition"] == BASELINE_CONDITION:
            baseline[r["passage_id"]].append(r["correct"])
        else:
            correct[(r["passage_id"], r["self_edit_index"])].append(r["correct"])
    out = []
    for s in samples:
        acc, base = _mean(correct[(s.context_id, s.index)]), _mean(baseline[s.context_id])
        out.append(rest_em.Scored(s, acc if rl.reward == "accuracy" else acc - base, acc, base))
    return out


def sft_examples(kept: Sequence[rest_em.Scored], passages: dict[str, Passage], spec, tokenizer) -> list[TrainExample]:
    """(self-edit prompt -> kept self-edit) pairs; an empty self-edit teaches nothing and is skipped."""
    return [TrainExample(completion=r.sample.text, prompt=policy_prompt(spec, tokenizer, passages[r.sample.context_id]))
            for r in kept if r.sample.text.strip()]


def _sample_rows(iteration: rest_em.Iteration) -> list[dict]:
    kept = {(r.sample.context_id, r.sample.index) for r in iteration.kept}
    return [{"passage_id": r.sample.context_id, "index": r.sample.index, "text": r.sample.text,
             "tokens": r.sample.tokens, "truncated": r.sample.truncated, "accuracy": r.accuracy,
             "baseline": r.baseline, "reward": r.reward, "beats_baseline": r.beats_baseline,
             "kept": (r.sample.context_id, r.sample.index) in kept} for r in iteration.scored]


class KnowledgeRL:
    """The RL phase of one spec: `run()` does every iteration, each followed by its SEAL condition."""

    def __init__(self, spec, model_dir: Path, data_dir: Path, out: Path, scorer: ScorerFactory, memo: Memo):
        self.spec, self.rl, self.model_dir, self.out, self.scorer, self.memo = spec, spec.rl, Path(model_dir), \
            Path(out), scorer, memo
        self.data_dir = Path(data_dir)
        self.writer = Writer.of(spec, model_dir)  # who writes (and is trained): the adapted model, or self_edit.writer
        self.train = read_passages(data_dir, "rl_passages.jsonl")
        self.evaluation = read_passages(data_dir)
        self._kit, self._tok = None, None  # the last sampling phase's kit (None: rounds on workers) and tokenizer

    def run(self) -> list[dict]:
        prev, summaries = None, []
        for k in range(1, self.rl.iterations + 1):
            summary = self.iteration(k, prev)
            prev = self.out / f"iter{k}" / "policy"
            summary["seal"] = self.seal_condition(k, prev)
            write_json(self.out / f"iter{k}" / "summary.json", summary)
            summaries.append(summary)
        if self.rl.held_in_check:
            self.held_in(self.rl.iterations + 1, prev)
        return summaries

    def passages(self, k: int) -> list[Passage]:
        """Iteration k's training passages: all of them, or the k-th block of rl.passages_per_iteration (cycling)."""
        m = self.rl.passages_per_iteration
        if m is None or m >= len(self.train):
            return self.train
        start = ((k - 1) * m) % len(self.train)
        return (self.train + self.train)[start: start + m]

    def held_in(self, k: int, policy: Path) -> dict:
        """The final policy's own samples on the training passages, rewarded like an iteration's but trained on by
        nothing: with iteration i's samples (policy i-1) they show whether each policy writes better self-edits
        for the passages it was trained on than the one before it."""
        folder = self.out / "held_in"
        samples, scored, results, _ = self._sample_and_reward(k - 1, policy, desc="held-in check", seed_iteration=k)
        self._kit = None
        it = rest_em.Iteration(samples, scored, [], None, rest_em.iteration_metrics(scored, []))
        summary = {"policy_iteration": k - 1, "metrics": it.metrics, "rounds": len(results)}
        write_jsonl(folder / "samples.jsonl", _sample_rows(it))
        write_json(folder / "summary.json", summary)
        print(f"held-in check: policy {k - 1}'s self-edits on the training passages, mean reward "
              f"{it.metrics['mean_reward']:.3f} -> {folder}")
        return summary

    def _sample_and_reward(self, k: int, prev: Path | None, desc: str, seed_iteration: int | None = None):
        """Policy `prev` samples rl.k self-edits per passage of iteration k (with the seeds of iteration
        `seed_iteration`, default k); each is rewarded by the inner loop on the policy model. Returns (samples,
        scored, round results, graded records) and leaves `self._kit` (the stage's kit over the policy model, None
        when the rounds ran on Ray workers) and `self._tok` for the SFT."""
        spec, rl, memo = self.spec, self.rl, self.memo
        passages, writer = self.passages(k), self.writer
        by_id = {p.id: p for p in passages}
        adapted = writer.student_policy(prev)  # the policy model itself, or the student's own weights
        fingerprint = policy_fingerprint(self.model_dir, adapted)
        recipe = KitRecipe.of(spec, self.model_dir, self.data_dir / "rl_questions.jsonl", self.scorer, adapted)
        # after sampling: the kit wraps the sampling model in LoRA layers
        rows, self._tok, kit = sample_and_kit(spec, self.model_dir, prev, recipe, lambda sampler: sample_k(
            sampler, None, writer.spec, passages, rl.k, spec.seed + rl_seed_offset(seed_iteration or k), memo=memo,
            model_fingerprint=writer.fingerprint(prev)), writer)
        self._kit = kit
        samples = [rest_em.Sample(r["passage_id"], r["index"], r["text"], r["tokens"], r["truncated"]) for r in rows]
        edits = by_passage([{"passage_id": s.context_id, "index": s.index, "text": s.text} for s in samples])
        with make_executor(spec.executor, recipe, spec.model.device) as executor:
            results = run_rounds(rl_rounds(passages, edits, spec, rl), kit, spec, fingerprint, memo, desc=desc,
                                 executor=executor, code=recipe.code)
        records = grade_records(spec, results, by_id)
        return samples, score_samples(records, samples, rl), results, records

    # -- one ReST-EM iteration ---------------------------------------------------------------------------------
    def iteration(self, k: int, prev: Path | None) -> dict:
        spec, rl = self.spec, self.rl
        folder = self.out / f"iter{k}"
        by_id = {p.id: p for p in self.passages(k)}
        done: dict = {}

        def sample(passages):
            done["samples"], done["scored"], done["results"], done["records"] = self._sample_and_reward(
                k, prev, desc=f"rl iteration {k}")
            return done["samples"]

        def reward(samples):
            return done["scored"]

        def sft(kept):
            examples = sft_examples(kept, by_id, self.writer.spec, self._tok)
            if not examples:
                return None
            return self.train_policy(k, prev, self._sft_model(), self._tok, examples)

        it = rest_em.iterate(self.passages(k), sample=sample, reward=reward, keep=rl.keep, top_m=rl.top_m, sft=sft)
        if it.sft is None:  # nothing to learn: the policy stays the previous one (iteration 1: an untrained LoRA)
            policy = folder / "policy"
            if prev is None:
                self.train_policy(k, None, self._sft_model(), self._tok, [])
            else:
                if policy.exists():
                    shutil.rmtree(policy)
                shutil.copytree(prev, policy)
        self._kit = None
        free_device_memory()
        write_jsonl(folder / "samples.jsonl", _sample_rows(it))
        write_jsonl(folder / "records.jsonl", done["records"])
        print(f"rl iteration {k}: {len(it.scored)} self-edits, mean reward {it.metrics['mean_reward']:.3f}, "
              f"{it.metrics['share_beating_baseline']:.0%} beat the baseline, {len(it.kept)} kept -> {folder}")
        return {"iteration": k, "active": True, "metrics": it.metrics, "sft": it.sft, "policy_trained": it.sft is not None,
                "training_passages": len(self.passages(k)), "rounds": len(done["results"]),
                "rl": rl.model_dump(mode="json", exclude={"iterations"}), **peak_memory_of(done["results"])}

    def _sft_model(self):
        """The model the policy's SFT trains a LoRA on: the kit's (its round LoRA taken off) when the adapted model
        is the writer, or None (the writer loaded by `train_policy` on a memo miss) when the rounds ran on workers
        or adapted a separate student."""
        return None if self._kit is None or self.writer.separate else self._kit.engine.peft_model.unload()

    def train_policy(self, k: int, prev: Path | None, model, tok, examples: list[TrainExample]) -> dict | None:
        """A fresh LoRA on the sampling model (previous policy merged in) trained on `examples`, saved stacked
        onto the previous policy as iteration k's policy; memoized whole (the adapter and its statistics).
        `model` None: the policy model (the writer's) is loaded here, only when the memo lacks the result."""
        spec, rl, writer = self.spec, self.rl, self.writer
        policy = self.out / f"iter{k}" / "policy"
        key = key_of({"policy_sft": code_fingerprint(__name__), "base": writer.fingerprint(prev),
                      "model_spec": writer.spec.model.model_dump(mode="json"), "sft": rl.sft.model_dump(mode="json"),
                      "examples": [(e.prompt, e.completion) for e in examples], "seed": spec.seed + k})
        if self.memo.get_dir(key, policy):
            stats = self.memo.get(key)
            return None if stats is None else stats.get("sft")
        if model is None:
            model, tok = writer.load(prev)
        engine = LoraEngine(model, tok, rl.sft.lora)
        stats = rest_em.sft_policy(engine, examples, rl.sft, seed=spec.seed + k)
        policy.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=policy.parent) as tmp:
            engine.save_adapter(tmp)
            stack_adapters(prev, Path(tmp), policy)
        self.memo.put(key, {"sft": stats})
        self.memo.put_dir(key, policy)
        return stats

    # -- the SEAL condition ---------------------------------------------------------------------------------------
    def seal_condition(self, k: int, policy: Path) -> dict:
        spec, memo = self.spec, self.memo
        condition = f"seal_iter{k}"
        folder = self.out / condition
        by_id = {p.id: p for p in self.evaluation}
        questions = self.data_dir / "questions.jsonl"
        writer, adapted = self.writer, self.writer.student_policy(policy)
        fingerprint = policy_fingerprint(self.model_dir, adapted)
        recipe = KitRecipe.of(spec, self.model_dir, questions, self.scorer, adapted)
        rows, _, kit = sample_and_kit(spec, self.model_dir, policy, recipe, lambda sampler: write_self_edits(
            sampler, None, writer.spec, self.evaluation, memo=memo, model_fingerprint=writer.fingerprint(policy)),
            writer)
        rounds = [replace(r, condition=condition) for r in plan_rounds(condition, self.evaluation, by_passage(rows), spec)]
        hits, misses = memo.hits, memo.misses
        with make_executor(spec.executor, recipe, spec.model.device) as executor:
            results = run_rounds(rounds, kit, spec, fingerprint, memo, desc=condition, executor=executor,
                                 code=recipe.code)
            version = kit_scorer_version(kit, executor)
        del kit
        free_device_memory()
        records = grade_records(spec, results, by_id)
        summary = {"iteration": k, "memo_hits": memo.hits - hits, "memo_misses": memo.misses - misses,
                   "lm_eval_task_version": version}
        write_jsonl(folder / "self_edits.jsonl", rows)
        write_condition(folder, condition, results, records, summary)
        print(f"{condition}: {len(results)} rounds ({summary['memo_hits']} memoized), {len(records)} answers -> {folder}")
        return summary
