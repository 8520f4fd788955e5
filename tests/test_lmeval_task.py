"""The project's lm-eval task: loads (with its version), scores in-process, and runs from the stock CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.lmeval import TASKS_DIR
from seal_repro.lmeval.knowledge import KNOWLEDGE_TASK, LmEvalQA, QAScorer
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

QUESTIONS = [
    {"id": "p0-q0", "passage_id": "p0", "question": "when was the town founded ?", "answer": "1874", "golds": ["1874"]},
    {"id": "p0-q1", "passage_id": "p0", "question": "who built the bridge ?", "answer": "paris", "golds": ["paris"]},
    {"id": "p1-q0", "passage_id": "p1", "question": "what is the capital of france ?", "answer": "paris", "golds": ["paris"]},
]


@pytest.fixture
def qfile(tmp_path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def test_task_yaml_has_version_and_loads():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert KNOWLEDGE_TASK in manager.all_tasks
    text = (TASKS_DIR / "seal_knowledge" / f"{KNOWLEDGE_TASK}.yaml").read_text()
    assert "metadata:" in text and "version:" in text


def test_in_process_scoring_answers_exactly_the_requested_questions(tiny_model_dir, qfile):
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    scorer = QAScorer(model, tok, questions_file=qfile, answer_prompt="question : {question} answer :",
                      max_new_tokens=3, batch_size=4, chat_template=False)
    recs = scorer.score(["p1-q0", "p0-q0"])
    assert [r["question_id"] for r in recs] == ["p1-q0", "p0-q0"]
    for r in recs:
        assert set(r) >= {"prediction", "contains", "exact_match", "f1"}
        assert r["contains"] in (0.0, 1.0) and 0.0 <= r["f1"] <= 1.0
    assert scorer.version is not None


def test_scorer_factory_is_picklable_and_uses_the_spec(tiny_model_dir, qfile):
    import pickle
    from types import SimpleNamespace

    factory = pickle.loads(pickle.dumps(LmEvalQA()))  # Ray workers build their own scorer from it
    assert factory == LmEvalQA() and "seal_repro.lmeval.knowledge" in factory.code_modules
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    spec = SimpleNamespace(
        evaluation=SimpleNamespace(answer_prompt="question : {question} answer :", max_new_tokens=2, batch_size=2,
                                   stop=("\n", "question :")),
        model=SimpleNamespace(chat_template=False))
    scorer = factory(model, tok, str(qfile), spec)
    assert isinstance(scorer, QAScorer) and scorer.chat_template is False
    assert scorer.task_dict[KNOWLEDGE_TASK]._config.generation_kwargs["max_gen_toks"] == 2
    assert scorer.task_dict[KNOWLEDGE_TASK]._config.generation_kwargs["until"] == ["\n", "question :"]  # evaluation.stop
    assert [r["question_id"] for r in scorer.score(["p0-q1"])] == ["p0-q1"]


def test_stock_lm_eval_cli_scores_a_saved_adapter(tiny_model_dir, qfile, tmp_path):
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    engine = LoraEngine(model, tok, LoraSpec(rank=2, alpha=4, target_modules=("q_proj", "v_proj")))
    engine.reset(0)
    engine.train([TrainExample("the town was founded in 1874")], train_config(TrainingSpec(epochs=2, lr=1e-2)), seed=0)
    engine.save_adapter(tmp_path / "adapter")
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"), "--model", "hf",
        "--model_args", f"pretrained={tiny_model_dir},peft={tmp_path / 'adapter'}",
        "--include_path", str(TASKS_DIR), "--tasks", KNOWLEDGE_TASK, "--device", "cpu", "--batch_size", "2",
        "--metadata", json.dumps({"data_file": str(qfile), "passage_id": "p0"}), "--output_path", str(out),
        "--log_samples",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    task = results["results"][KNOWLEDGE_TASK]
    assert "contains,none" in task and results["n-samples"][KNOWLEDGE_TASK]["effective"] == 2  # passage p0 only
    # The stock `hf` model and the toolkit's in-process scorer (lm-eval's HF model with the engine's batched,
    # prefix-shared generation: seal_repro/lmeval/engine_lm.py) give the same answers on the same adapter.
    stock = {}
    for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines():
        sample = json.loads(line)
        stock[sample["doc"]["id"]] = sample["filtered_resps"][0]
    scorer = QAScorer(engine.base_model, tok, questions_file=qfile, answer_prompt=_task_default_prompt(),
                      max_new_tokens=32, batch_size=2, chat_template=False)
    ours = {r["question_id"]: r["prediction"] for r in scorer.score(sorted(stock))}
    assert ours == stock and any(stock.values())


def _task_default_prompt() -> str:
    from seal_repro.spec.evaluation import DEFAULT_ANSWER_PROMPT

    return DEFAULT_ANSWER_PROMPT


def _task(metadata: dict):
    from lm_eval.tasks import get_task_dict

    from seal_repro.lmeval import task_manager

    return get_task_dict([KNOWLEDGE_TASK], task_manager(KNOWLEDGE_TASK, metadata))[KNOWLEDGE_TASK]


def test_stop_strings_come_from_the_metadata_and_default_to_the_yaml(qfile):
    """`evaluation.stop` reaches the task's `until` through the metadata key `stop` ([] = end-of-text only, the
    reference's rule); without the key the YAML's newline stop applies."""
    assert _task({"data_file": str(qfile)})._config.generation_kwargs["until"] == ["\n"]
    assert _task({"data_file": str(qfile), "stop": []})._config.generation_kwargs["until"] == []
    assert _task({"data_file": str(qfile), "stop": ["Question:"]})._config.generation_kwargs["until"] == ["Question:"]
    with pytest.raises(ValueError, match="list of non-empty strings"):
        _task({"data_file": str(qfile), "stop": "\n"})


def test_answer_prompt_shows_the_title_of_the_question_row(tmp_path):
    """The reference's answer prompt (utils.py:11-15, its question prefixed 'Topic: <title>' as query_server.py:129
    does): the title comes from the question row, which prepare_data writes."""
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({**QUESTIONS[0], "title": "Super Bowl 50"}) + "\n")
    template = "Let's answer a question directly and concisely.\nQuestion: Topic: {title}\n{question}\nAnswer:\n"
    doc = next(iter(_task({"data_file": str(path), "answer_prompt": template}).test_docs()))
    assert doc["prompt"] == ("Let's answer a question directly and concisely.\nQuestion: Topic: Super Bowl 50\n"
                             "when was the town founded ?\nAnswer:\n")
    untitled = tmp_path / "untitled.jsonl"  # a questions file written without titles
    untitled.write_text(json.dumps(QUESTIONS[0]) + "\n")
    with pytest.raises(ValueError, match="has no title"):
        _task({"data_file": str(untitled), "answer_prompt": "{title}: {question}"})
