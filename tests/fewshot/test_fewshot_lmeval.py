"""The `seal_arc` lm-eval task and the predictor glue, run in-process on the tiny Llama."""

from __future__ import annotations

import pytest

from seal_repro.errors import UserError
from seal_repro.fewshot.vote import prompt_rows, vote_prompts, vote_transforms
from seal_repro.io import write_jsonl
from seal_repro.lmeval import TASKS_DIR
from seal_repro.lmeval.arc import ARC_TASK, ArcPredictor, LmEvalArc


def test_task_yaml_is_indexed_and_versioned():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert ARC_TASK == "seal_arc" and ARC_TASK in manager.all_tasks  # lm-eval drops a broken YAML silently
    text = (TASKS_DIR / "seal_arc" / "seal_arc.yaml").read_text()
    assert "version:" in text and "generate_until" in text


def test_process_results_scores_the_transformed_target():
    import importlib.util

    spec = importlib.util.spec_from_file_location("seal_arc_utils", TASKS_DIR / "seal_arc" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = {"target": "01\n23"}
    assert utils.process_results(doc, ["01\n23\n\nInput:"]) == {"grid_match": 1.0, "parsed": 1.0}
    assert utils.process_results(doc, ["10\n23"]) == {"grid_match": 0.0, "parsed": 1.0}
    assert utils.process_results(doc, ["the answer is red"]) == {"grid_match": 0.0, "parsed": 0.0}


def test_prompt_rows_hold_transformed_targets(tiny_spec, task):
    rows = prompt_rows([task], "eval", vote_transforms(tiny_spec))
    assert [r["prompt"] for r in rows] == [p for _, p in vote_prompts(task, 0, vote_transforms(tiny_spec))]
    by_t = {r["transform"]: r for r in rows}
    assert by_t["identity"]["target"] == "01\n32" and by_t["flip_v"]["target"] == "32\n01"
    assert all(r["target"] not in r["prompt"].rsplit("Input:", 1)[1] for r in rows)  # never shown to the model


def test_predictor_answers_each_prompt_in_order(tiny_spec, tiny_loaded, task, tmp_path):
    model, tok = tiny_loaded
    rows = prompt_rows([task], "eval", vote_transforms(tiny_spec))
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    predict = ArcPredictor(model, tok, prompts_file=tmp_path / "prompts.jsonl", max_new_tokens=4, batch_size=8,
                           chat_template=False)
    asked = [rows[2]["prompt"], rows[0]["prompt"], rows[2]["prompt"]]
    out = predict(asked)
    assert len(out) == 3 and out[0] == out[2] and all(isinstance(o, str) for o in out)
    assert predict.version == 1.0
    with pytest.raises(UserError, match="not in the lm-eval prompts file"):
        predict(["a prompt nobody wrote"])


def test_predictor_factory_is_picklable_and_uses_the_spec(tiny_spec, tiny_loaded, task, tmp_path):
    import pickle

    model, tok = tiny_loaded
    rows = prompt_rows([task], "eval", vote_transforms(tiny_spec))
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    factory = pickle.loads(pickle.dumps(LmEvalArc()))  # a worker process builds its own predictor from it
    assert factory == LmEvalArc() and "seal_repro.lmeval.arc" in factory.code_modules
    predict = factory(model, tok, str(tmp_path / "prompts.jsonl"), tiny_spec)
    assert isinstance(predict, ArcPredictor) and predict.chat_template == tiny_spec.model.chat_template
    task_cfg = predict.task_dict[ARC_TASK]._config
    assert task_cfg.generation_kwargs["max_gen_toks"] == tiny_spec.evaluation.max_new_tokens
    assert len(predict([rows[0]["prompt"]])) == 1 and predict.calls == 1
