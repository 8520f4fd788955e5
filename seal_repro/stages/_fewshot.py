"""What the fewshot stages share: the tasks folder's files, self-edit files, and the lm-eval glue that
turns `seal_arc` into the `predict_fn` the few-shot inner loop takes.

The predictor runs lm-eval in-process on the in-memory model (its LoRA weights change in place between
rounds), selecting with `samples=` the docs whose prompts the inner loop asks for.
"""

from __future__ import annotations

import logging
from pathlib import Path

from seal_repro.errors import UserError
from seal_repro.fewshot.grids import grid_to_text
from seal_repro.fewshot.tasks import Task, read_task_file
from seal_repro.io import read_jsonl
from seal_repro.lmeval_glue import TASKS_DIR

ARC_TASK = "seal_arc"
PROMPTS = "prompts.jsonl"
SELF_EDITS = "self_edits.jsonl"


def _pairs(pairs) -> list[dict]:
    return [{"input": [list(r) for r in i], "output": [list(r) for r in o]} for i, o in pairs]


def task_to_dict(task: Task) -> dict:
    """The ARC JSON layout `task_from_dict` reads back."""
    return {"id": task.id, "train": _pairs(task.train), "test": _pairs(task.test)}


def read_tasks(tasks_dir: str | Path, role: str) -> list[Task]:
    """The tasks the fewshot_tasks stage wrote for `role` ("train" or "eval"); a malformed file is a DataError
    naming the file and the record."""
    return read_task_file(Path(tasks_dir) / f"{role}.jsonl")


def read_self_edits(folder: str | Path) -> dict[str, list[str]]:
    """{task id: self-edit texts in sample order} from a self_edits.jsonl."""
    out: dict[str, list[str]] = {}
    for row in sorted(read_jsonl(Path(folder) / SELF_EDITS), key=lambda r: (r["task_id"], r["index"])):
        out.setdefault(row["task_id"], []).append(row["text"])
    return out


def sampling_key(spec, model_dir: str | Path, tasks: list[Task], seed: int) -> str:
    """Everything that decides a batch of sampled self-edits: equal keys, identical samples."""
    from seal_repro.memo import fingerprint_model_dir, key_of

    return key_of({
        "model": fingerprint_model_dir(model_dir), "dtype": spec.model.dtype, "device": spec.model.device,
        "chat_template": spec.model.chat_template,
        "self_edit": spec.self_edit.model_dump(mode="json"), "batch_size": spec.evaluation.batch_size,
        "tasks": [task_to_dict(t) for t in tasks], "seed": seed,
    })


def prompt_rows(tasks: list[Task], role: str, transforms) -> list[dict]:
    """One lm-eval doc per (task, test input, voting transform), in the order the inner loop asks."""
    from seal_repro.fewshot.vote import vote_prompts

    rows = []
    for task in tasks:
        for k, (_, expected) in enumerate(task.test):
            for t, prompt in vote_prompts(task, k, transforms):
                target = t.apply(expected) if hasattr(t, "fits") else expected
                rows.append({"id": f"{task.id}/{k}/{t.name}", "task_id": task.id, "split": role, "test_index": k,
                             "transform": t.name, "prompt": prompt, "target": grid_to_text(target)})
    return rows


class ArcPredictor:
    """`predict(prompts) -> texts`: greedy answers from lm-eval's `seal_arc` task on the model as it is now."""

    def __init__(self, model, tokenizer, *, prompts_file: Path, max_new_tokens: int, batch_size: int,
                 chat_template: bool):
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager, get_task_dict

        for name in ("lm-eval", "lm_eval"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        # include_defaults=False: indexing lm-eval's thousands of built-in task YAMLs costs ~15 s per stage.
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                              metadata={"data_file": str(prompts_file)})
        # lm-eval drops a broken task YAML from its index silently: check ours is really there.
        if ARC_TASK not in manager.all_tasks:
            raise UserError(f"{TASKS_DIR}: lm-eval task {ARC_TASK!r} failed to load")
        self.task_dict = get_task_dict([ARC_TASK], manager)
        task = self.task_dict[ARC_TASK]
        task._config.generation_kwargs["max_gen_toks"] = max_new_tokens
        self.index: dict[str, int] = {}
        for i, doc in enumerate(task.test_docs()):
            self.index.setdefault(doc["prompt"], i)  # two transforms may give one prompt: one answer serves both
        self.chat_template = chat_template
        self.version = task.config.metadata.get("version")
        self.calls = 0

    def __call__(self, prompts: list[str]) -> list[str]:
        from lm_eval.evaluator import evaluate

        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise UserError(f"{len(missing)} prompt(s) are not in the lm-eval prompts file; re-run fewshot_tasks")
        idx = sorted({self.index[p] for p in prompts})
        out = evaluate(self.lm, self.task_dict, samples={ARC_TASK: idx}, log_samples=True, bootstrap_iters=0,
                       apply_chat_template=self.chat_template, verbosity="ERROR")
        by_doc = {}
        for s in out["samples"][ARC_TASK]:
            by_doc[s["doc_id"]] = s["filtered_resps"][0] if s.get("filtered_resps") else s["resps"][0][0]
        self.calls += 1
        return [by_doc[self.index[p]] for p in prompts]
