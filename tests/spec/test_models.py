"""Each cross-field rule of the spec models: one input that trips it, one close neighbour that passes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seal_repro.spec.data import DataSpec
from seal_repro.spec.evaluation import EvaluationSpec
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.self_edit import SelfEditSpec

# (model, failing input, message, passing input)
RULES = [
    (ModelSpec, {"source": "hf"}, "model.source is 'hf' but model.id is not set", {"source": "hf", "id": "gpt2"}),
    (ModelSpec, {"source": "local"}, "model.source is 'local' but model.path is not set",
     {"source": "local", "path": "m"}),
    (ModelSpec, {"id": "gpt2"}, "model.source is 'embedded' but model.id/model.path is set", {}),
    (ModelSpec, {"source": "local", "path": "m", "id": "gpt2"}, "model.id is only read when model.source is 'hf'",
     {"source": "local", "path": "m"}),
    (ModelSpec, {"source": "hf", "id": "gpt2", "path": "m"}, "model.path is only read when model.source is 'local'",
     {"source": "hf", "id": "gpt2"}),
    (DataSpec, {"kind": "fictional", "path": "x.json"}, "data.path is set but data.kind is 'fictional'",
     {"kind": "fictional"}),
    (DataSpec, {"kind": "seal_json"}, "data.kind is 'seal_json' but data.path is not set",
     {"kind": "seal_json", "path": "x.json"}),
    (DataSpec, {"questions_per_passage": 4}, "questions_per_passage must be >= 5", {"questions_per_passage": 5}),
    (SelfEditSpec, {"prompt": "custom"}, "self_edit.prompt is 'custom' but self_edit.template is not set",
     {"prompt": "custom", "template": "{passage}"}),
    (SelfEditSpec, {"prompt": "custom", "template": "Rewrite {title}"}, "must contain the placeholder \\{passage\\}",
     {"prompt": "custom", "template": "Rewrite {title}: {passage}"}),
    (SelfEditSpec, {"prompt": "rewrite", "template": "{passage}"}, "only read when self_edit.prompt is 'custom'",
     {"prompt": "rewrite"}),
    (LoraSpec, {"target_modules": []}, "must name at least one module", {"target_modules": ["q_proj"]}),
    (EvaluationSpec, {"answer_prompt": "Answer:"}, "must contain the placeholder \\{question\\}",
     {"answer_prompt": "Q: {question}\nA:"}),
    (ExperimentSpec, {"conditions": ["base", "base"]}, "listed twice: base", {"conditions": ["base"]}),
    (ExperimentSpec, {"conditions": []}, "name at least one condition", {"conditions": ["passage"]}),
]
NEEDS_MODEL = {ModelSpec: {"chat_template": False}, ExperimentSpec: {"model": {"chat_template": False}}}


def _ids(rule):
    return f"{rule[0].__name__}:{rule[2][:40]}"


@pytest.mark.parametrize("model, bad, message, good", RULES, ids=[_ids(r) for r in RULES])
def test_rule_raises(model, bad, message, good):
    with pytest.raises(ValidationError, match=message):
        model.model_validate({**NEEDS_MODEL.get(model, {}), **bad})


@pytest.mark.parametrize("model, bad, message, good", RULES, ids=[_ids(r) for r in RULES])
def test_rule_passes(model, bad, message, good):
    model.model_validate({**NEEDS_MODEL.get(model, {}), **good})
