"""The knowledge scorer: answer some questions with an in-memory (adapted) model through lm-eval's
`seal_knowledge_qa` task.

The task is loaded once; every round calls `evaluate` with `samples=` selecting that passage's questions, on the
same HFLM wrapper around the same model object (whose LoRA weights change in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seal_repro.lmeval import task_manager

KNOWLEDGE_TASK = "seal_knowledge_qa"
CODE_DATA = ("lmeval_tasks/seal_knowledge",)  # the task's YAML and utils.py decide every answer (seal_repro.codehash)


class QAScorer:
    def __init__(self, model, tokenizer, *, questions_file: Path, answer_prompt: str, max_new_tokens: int,
                 batch_size: int, chat_template: bool):
        # lm-eval is heavy (~2 s of imports): loaded when a stage builds a scorer, not when the CLI starts.
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import get_task_dict

        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        manager = task_manager(KNOWLEDGE_TASK, {"data_file": str(questions_file), "answer_prompt": answer_prompt})
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


@dataclass(frozen=True)
class LmEvalQA:
    """The knowledge domain's scorer factory (seal_repro.knowledge.inner_loop.ScorerFactory): picklable, so Ray
    workers build their own."""

    code_modules: tuple[str, ...] = (__name__,)

    def __call__(self, model, tokenizer, questions_file: Path, spec) -> QAScorer:
        ev = spec.evaluation
        return QAScorer(model, tokenizer, questions_file=Path(questions_file), answer_prompt=ev.answer_prompt,
                        max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                        chat_template=spec.model.chat_template)
