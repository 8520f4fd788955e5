"""Dataset and metric hooks for the `seal_arc` lm-eval task.

The prompts live in a JSONL file written by the fewshot_tasks stage (one row per (task, test input,
transform): id, task_id, split, test_index, transform, prompt, target; and, in the reference's prompt format,
system and format). `target` is the expected
output under the same transform; it is scored here and never shown to the model.
"""

import json
import os

from datasets import Dataset, DatasetDict

from seal_repro.fewshot.formats import REFERENCE, OURS

DEFAULT_DATA_FILE = os.path.join("build", "fewshot", "tasks", "prompts.jsonl")


def load_prompts(data_file=None, split=None, task_id=None, **_metadata):
    path = data_file or os.environ.get("SEAL_REPRO_ARC_FILE") or DEFAULT_DATA_FILE
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if (split and row["split"] != split) or (task_id and row["task_id"] != task_id):
                continue
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no prompts (split={split!r}, task_id={task_id!r})")
    return DatasetDict({"test": Dataset.from_list(rows)})


def process_results(doc, results):
    fmt = REFERENCE if doc.get("format") == "reference" else OURS  # rows of our format carry no `format`
    grid = fmt.decode(results[0])
    return {"grid_match": float(grid is not None and grid == fmt.decode(doc["target"])),
            "parsed": float(grid is not None)}
