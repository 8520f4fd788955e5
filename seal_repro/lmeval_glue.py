"""Glue between the knowledge domain and lm-eval: score an in-memory (adapted) model on some questions.

The task is loaded once; every round calls `evaluate` with `samples=` selecting that passage's
questions, on the same HFLM wrapper around the same model object (whose LoRA weights change in place).
"""

from __future__ import annotations

import logging
from pathlib import Path

from seal_repro.errors import UserError

TASKS_DIR = Path(__file__).parent / "lmeval_tasks"
KNOWLEDGE_TASK = "seal_knowledge_qa"


class QAScorer:
    def __init__(self, model, tokenizer, *, questions_file: Path, answer_prompt: str, max_new_tokens: int,
                 batch_size: int, chat_template: bool):
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager, get_task_dict

        for name in ("lm-eval", "lm_eval"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        manager = TaskManager(
            include_path=str(TASKS_DIR), include_defaults=False,  # indexing all of lm-eval takes ~30 s
            metadata={"data_file": str(questions_file), "answer_prompt": answer_prompt},
        )
        # lm-eval drops a broken task YAML from its index silently: check ours is really there.
        if KNOWLEDGE_TASK not in manager.all_tasks:
            raise UserError(f"{TASKS_DIR}: lm-eval task {KNOWLEDGE_TASK!r} failed to load")
        self.task_dict = get_task_dict([KNOWLEDGE_TASK], manager)
        task = self.task_dict[KNOWLEDGE_TASK]
        task._config.generation_kwargs["max_gen_toks"] = max_new_tokens
        self.docs = list(task.test_docs())
        self.index = {doc["id"]: i for i, doc in enumerate(self.docs)}
        self.chat_template = chat_template
        self.version = task.config.metadata.get("version")

    def score(self, question_ids: list[str]) -> list[dict]:
        """Answer the given questions with the model as it is now; one record per question, in order."""
        from lm_eval.evaluator import evaluate

        idx = [self.index[q] for q in question_ids]
        out = evaluate(
            self.lm, self.task_dict, samples={KNOWLEDGE_TASK: idx}, log_samples=True, bootstrap_iters=0,
            apply_chat_template=self.chat_template, verbosity="ERROR",
        )
        by_doc = {s["doc_id"]: s for s in out["samples"][KNOWLEDGE_TASK]}
        records = []
        for q, i in zip(question_ids, idx):
            s = by_doc[i]
            pred = s["filtered_resps"][0] if s.get("filtered_resps") else s["resps"][0][0]
            records.append({
                "question_id": q, "prediction": pred,
                "contains": s["contains"], "exact_match": s["exact_match"], "f1": s["f1"],
            })
        return records
