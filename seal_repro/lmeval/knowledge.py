"""The knowledge scorer: answer some questions with an in-memory (adapted) model through lm-eval's
`seal_knowledge_qa` task.

The task is loaded once; every round calls `evaluate` with `samples=` selecting that passage's questions, on the
same lm-eval model around the same model object (whose LoRA weights change in place). The lm-eval model is
lm-eval's own HF model with the engine's generation (`seal_repro/lmeval/engine_lm.py`), so answers come at engine
speed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from seal_repro.lmeval import task_manager

KNOWLEDGE_TASK = "seal_knowledge_qa"
CODE_DATA = ("lmeval_tasks/seal_knowledge",)  # the task's YAML and utils.py decide every answer (seal_repro.codehash)


def _slotted_questions(questions_file: Path, slots: int, out_dir: Path) -> Path:
    """The questions file with every question once per adapter slot (`slot` field; id `<id>@<slot>` past slot 0),
    so one lm-eval call can ask the same question of several adapters (lm-eval answers each document once)."""
    rows = [json.loads(line) for line in Path(questions_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    path = Path(out_dir) / "questions_by_slot.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for s in range(slots):
            for row in rows:
                fh.write(json.dumps({**row, "id": row["id"] if s == 0 else f"{row['id']}@{s}", "slot": s}) + "\n")
    return path


class QAScorer:
    """lm-eval's `seal_knowledge_qa` task, scored in-process on `model` (its LoRA weights as they are) by
    `EngineLM`; with `slots` > 1, many adapters of a SlotBank answered in one call."""

    def __init__(self, model, tokenizer, *, questions_file: Path, answer_prompt: str, max_new_tokens: int,
                 batch_size: int, chat_template: bool, slots: int = 1, stop: tuple[str, ...] | None = None):
        # lm-eval is heavy (~2 s of imports): loaded when a stage builds a scorer, not when the CLI starts.
        from lm_eval.tasks import get_task_dict

        from seal_repro.lmeval.engine_lm import EngineLM

        self.lm = EngineLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        self._tmp = tempfile.TemporaryDirectory(prefix="seal-qa-")
        data_file = _slotted_questions(questions_file, slots, Path(self._tmp.name)) if slots > 1 else questions_file
        # stop: the strings that end an answer ([] = end-of-text only: the task's SealKnowledgeQA reads the metadata
        # key); None keeps the task YAML's `until`.
        metadata = {"data_file": str(data_file), "answer_prompt": answer_prompt}
        if stop is not None:
            metadata["stop"] = list(stop)
        manager = task_manager(KNOWLEDGE_TASK, metadata)
        self.task_dict = get_task_dict([KNOWLEDGE_TASK], manager)
        task = self.task_dict[KNOWLEDGE_TASK]
        task._config.generation_kwargs["max_gen_toks"] = max_new_tokens
        self.docs = list(task.test_docs())
        self.index = {(doc["id"].rsplit("@", 1)[0] if doc.get("slot") else doc["id"], doc.get("slot", 0)): i
                      for i, doc in enumerate(self.docs)}
        self.slots = slots
        self.chat_template = chat_template
        self.version = task.config.metadata.get("version")

    def score(self, question_ids: list[str]) -> list[dict]:
        """Answer the given questions with the model as it is now; one record per question, in order."""
        return self._evaluate([(q, 0) for q in question_ids], None)

    def score_slots(self, bank, question_ids: list[list[str]]) -> list[list[dict]]:
        """Slot b of `bank` answers question_ids[b], all in one lm-eval call; one list of records per slot."""
        if len(question_ids) > self.slots:
            raise ValueError(f"{len(question_ids)} adapters to score but the scorer was built for {self.slots} slots")
        flat = self._evaluate([(q, b) for b, qs in enumerate(question_ids) for q in qs], bank)
        out, at = [], 0
        for qs in question_ids:
            out.append(flat[at: at + len(qs)])
            at += len(qs)
        return out

    def _evaluate(self, asked: list[tuple[str, int]], bank) -> list[dict]:
        from lm_eval.evaluator import evaluate

        idx = [self.index[key] for key in asked]
        self.lm.bank = bank
        try:
            out = evaluate(self.lm, self.task_dict, samples={KNOWLEDGE_TASK: idx}, log_samples=True, bootstrap_iters=0,
                           apply_chat_template=self.chat_template, verbosity="ERROR")
        finally:
            self.lm.bank = None
        by_doc = {s["doc_id"]: s for s in out["samples"][KNOWLEDGE_TASK]}
        records = []
        for (q, _), i in zip(asked, idx):
            s = by_doc[i]
            pred = s["filtered_resps"][0] if s.get("filtered_resps") else s["resps"][0][0]
            records.append({
                "question_id": q, "prediction": pred,
                "contains": s["contains"], "exact_match": s["exact_match"], "f1": s["f1"],
            })
        return records


@dataclass(frozen=True)
class LmEvalQA:
    """The knowledge domain's scorer factory (seal_repro.knowledge.inner_loop.ScorerFactory): picklable, so Ray
    workers build their own."""

    code_modules: tuple[str, ...] = (__name__,)

    def __call__(self, model, tokenizer, questions_file: Path, spec) -> QAScorer:
        ev = spec.evaluation
        return QAScorer(model, tokenizer, questions_file=Path(questions_file), answer_prompt=ev.answer_prompt,
                        max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                        chat_template=spec.model.chat_template,
                        slots=getattr(getattr(spec, "executor", None), "rounds_per_batch", 1), stop=tuple(ev.stop))
