"""Glue between the domains and lm-eval: the project's lm-eval tasks (`seal_repro/lmeval_tasks/`), scored in-process
on a model whose LoRA weights change in place between rounds. The domains never import this package; a stage
hands them its scorer factories (`knowledge.LmEvalQA`, `arc.LmEvalArc`)."""

import logging
from pathlib import Path

from seal_repro.errors import UserError

TASKS_DIR = Path(__file__).resolve().parent.parent / "lmeval_tasks"


def task_manager(task: str, metadata: dict):
    """lm-eval's TaskManager over our task folder only, checked to hold `task`."""
    from lm_eval.tasks import TaskManager  # heavy: imported when a stage builds a scorer, not by the CLI

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # include_defaults=False: indexing lm-eval's thousands of built-in task YAMLs costs ~15-30 s per stage.
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    # lm-eval drops a broken task YAML from its index silently: check ours is really there.
    if task not in manager.all_tasks:
        raise UserError(f"{TASKS_DIR}: lm-eval task {task!r} failed to load")
    return manager
