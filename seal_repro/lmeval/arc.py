"""The ARC predictor: greedy answers from lm-eval's `seal_arc` task on an in-memory (adapted) model.

lm-eval runs in-process on the model object (its LoRA weights change in place between rounds), selecting with
`samples=` the documents whose prompts the inner loop asks for; its model is lm-eval's HF model with the engine's
batched, prefix-shared generation (seal_repro/lmeval/engine_lm.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seal_repro.errors import UserError
from seal_repro.fewshot.formats import prompt_key
from seal_repro.lmeval import task_manager

ARC_TASK = "seal_arc"
CODE_DATA = ("lmeval_tasks/seal_arc",)  # the task's YAML and utils.py decide every answer (seal_repro.codehash)


class ArcPredictor:
    """`predict(prompts) -> texts` on the model as it is now; a prompt is named by its key (fewshot.formats.Prompt.key:
    the user text, or the system and user texts of the reference's layout)."""

    def __init__(self, model, tokenizer, *, prompts_file: Path, max_new_tokens: int, batch_size: int,
                 chat_template: bool, until: list[str] | None = None):
        # lm-eval is heavy (~2 s of imports): loaded when a stage builds a predictor, not when the CLI starts.
        from lm_eval.tasks import get_task_dict

        from seal_repro.lmeval.engine_lm import EngineLM

        self.lm = EngineLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        self.task_dict = get_task_dict([ARC_TASK], task_manager(ARC_TASK, {"data_file": str(prompts_file)}))
        task = self.task_dict[ARC_TASK]
        task._config.generation_kwargs["max_gen_toks"] = max_new_tokens
        if until is not None:  # the prompt format's stop strings (the reference's: none but EOS)
            task._config.generation_kwargs["until"] = list(until)
        self.index: dict[str, int] = {}
        for i, doc in enumerate(task.test_docs()):
            # two transforms may give one prompt: one answer serves both
            self.index.setdefault(prompt_key(doc["prompt"], doc.get("system") or ""), i)
        self.chat_template = chat_template
        self.version = task.config.metadata.get("version")
        self.calls = 0

    def __call__(self, prompts: list[str]) -> list[str]:
        from lm_eval.evaluator import evaluate

        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise UserError(f"{len(missing)} prompt(s) are not in the lm-eval prompts file; re-run the tasks stage")
        idx = sorted({self.index[p] for p in prompts})
        out = evaluate(self.lm, self.task_dict, samples={ARC_TASK: idx}, log_samples=True, bootstrap_iters=0,
                       apply_chat_template=self.chat_template, verbosity="ERROR")
        by_doc = {}
        for s in out["samples"][ARC_TASK]:
            by_doc[s["doc_id"]] = s["filtered_resps"][0] if s.get("filtered_resps") else s["resps"][0][0]
        self.calls += 1
        return [by_doc[self.index[p]] for p in prompts]


@dataclass(frozen=True)
class LmEvalArc:
    """The few-shot domain's predictor factory (seal_repro.fewshot.inner_loop.PredictorFactory); picklable."""

    code_modules: tuple[str, ...] = (__name__,)

    def __call__(self, model, tokenizer, prompts_file: Path, spec) -> ArcPredictor:
        from seal_repro.fewshot.formats import format_of

        ev, fmt = spec.evaluation, format_of(spec)
        return ArcPredictor(model, tokenizer, prompts_file=Path(prompts_file), max_new_tokens=ev.max_new_tokens,
                            batch_size=ev.batch_size, chat_template=spec.model.chat_template,
                            until=None if fmt.name == "ours" else list(fmt.stop))
