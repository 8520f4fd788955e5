"""Dataset and metric hooks for the `seal_knowledge_qa` lm-eval task.

The questions live in a JSONL file written by the prepare_data stage (one row per question:
id, passage_id, question, answer, golds); the task renders the no-context answer prompt itself so
the same folder works from the stock `lm_eval` CLI.
"""

import json
import os

from datasets import Dataset, DatasetDict

from seal_repro.graders import offline_scores
from seal_repro.spec.evaluation import DEFAULT_ANSWER_PROMPT

DEFAULT_DATA_FILE = os.path.join("build", "knowledge", "data", "questions.jsonl")


def load_questions(data_file=None, passage_id=None, answer_prompt=None, **_metadata):
    path = data_file or os.environ.get("SEAL_REPRO_QA_FILE") or DEFAULT_DATA_FILE
    template = answer_prompt or DEFAULT_ANSWER_PROMPT
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if passage_id and row["passage_id"] != passage_id:
                continue
            row["prompt"] = template.format(question=row["question"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no questions (passage_id={passage_id!r})")
    return DatasetDict({"test": Dataset.from_list(rows)})


def process_results(doc, results):
    return offline_scores(results[0], tuple(doc["golds"]))
