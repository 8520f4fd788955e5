"""Dataset, metric and task hooks for the `seal_knowledge_qa` lm-eval task.

The questions live in a JSONL file written by the prepare_data stage (one row per question:
id, passage_id, title, question, answer, golds); the task renders the no-context answer prompt itself so
the same folder works from the stock `lm_eval` CLI.

Metadata keys (TaskManager(metadata=...) in-process, `--metadata '{...}'` from the CLI):
  data_file      the questions JSONL (default build/knowledge/data/questions.jsonl, or $SEAL_REPRO_QA_FILE)
  passage_id     only that passage's questions
  answer_prompt  the prompt template: {question}, and optionally {title} (the row's passage title)
  stop           a list of strings that end an answer (the generation's `until`); [] = end-of-text only.
                 Absent: the YAML's `until`.
"""

import json
import os

from datasets import Dataset, DatasetDict
from lm_eval.api.task import ConfigurableTask

from seal_repro.graders import offline_scores
from seal_repro.spec.evaluation import DEFAULT_ANSWER_PROMPT

DEFAULT_DATA_FILE = os.path.join("build", "knowledge", "data", "questions.jsonl")


def render_prompt(template, row):
    """The answer prompt of one question row: {question} and {title} filled in (str.format)."""
    if "{title}" in template and "title" not in row:
        raise ValueError(f"answer_prompt shows {{title}} but question {row.get('id')!r} has no title "
                         "(write the questions file with the prepare_data stage)")
    return template.format(question=row["question"], title=row.get("title", ""))


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
            row["prompt"] = render_prompt(template, row)
            row.setdefault("title", "")  # one column type for every row (files written before titles were)
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no questions (passage_id={passage_id!r})")
    return DatasetDict({"test": Dataset.from_list(rows)})


def process_results(doc, results):
    return offline_scores(results[0], tuple(doc["golds"]))


class SealKnowledgeQA(ConfigurableTask):
    """The YAML's task, with the stop strings taken from the metadata key `stop` when it is given."""

    def __init__(self, config=None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        stop = (config.get("metadata") or {}).get("stop")
        if stop is not None:
            if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
                raise ValueError(f"metadata stop must be a list of non-empty strings (got {stop!r})")
            config["generation_kwargs"] = {**(config.get("generation_kwargs") or {}), "until": list(stop)}
        super().__init__(config=config, **kwargs)
