"""The `seal_arc` lm-eval task and the predictor glue, run in-process on the tiny Llama."""

from __future__ import annotations

import pytest

from seal_repro.errors import UserError
from seal_repro.fewshot.inner_loop import vote_transforms
from seal_repro.fewshot.vote import vote_prompts
from seal_repro.io import write_jsonl
from seal_repro.lmeval_glue import TASKS_DIR
from seal_repro.stages._fewshot import ArcPredictor, prompt_rows


def test_task_yaml_is_indexed_and_versioned():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert "seal_arc" in manager.all_tasks  # lm-eval drops a broken YAML silently
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
