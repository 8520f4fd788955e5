"""Every validator of every spec model has a raise/pass pair, and a validator without one fails this file.

The validators are enumerated from the models (pydantic's decorator registry, through every nested section
and union member of every domain), so a rule added to any section must be listed in RULES. Each rule is
checked twice: through `model_validate` (the user's path) and by calling the named validator itself on the
same input, which proves the pair exercises that validator and not a neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from seal_repro.spec import SPEC_MODELS
from seal_repro.spec.loader import _models_in

MODEL = {"chat_template": False}
EVAL8 = {"kind": "fictional", "n_passages": 8}


def _reachable() -> dict[str, type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}

    def walk(m):
        if m.__name__ in seen:
            return
        seen[m.__name__] = m
        for info in m.model_fields.values():
            for sub in _models_in(info.annotation):
                walk(sub)

    for m in SPEC_MODELS.values():
        walk(m)
    return seen


MODELS = _reachable()


def _validators(model) -> dict[str, str]:
    d = model.__pydantic_decorators__
    return {**{n: "model" for n in d.model_validators}, **{n: "field" for n in d.field_validators}}


ALL_VALIDATORS = sorted((name, v) for name, m in MODELS.items() for v in _validators(m))


@dataclass(frozen=True)
class Rule:
    model: str  # class name, as in MODELS
    validator: str
    bad: dict
    message: str  # regex the error must match
    good: dict  # the nearest input that passes

    def __str__(self):
        return f"{self.model}.{self.validator}:{self.message[:30]}"


R = Rule
RULES = [
    # --- knowledge --------------------------------------------------------------------------------------------
    R("ModelSpec", "_source_fields", {**MODEL, "source": "hf"}, "model.id is not set", {**MODEL, "source": "hf", "id": "g"}),
    R("ModelSpec", "_source_fields", {**MODEL, "source": "local"}, "model.path is not set",
      {**MODEL, "source": "local", "path": "m"}),
    R("ModelSpec", "_source_fields", {**MODEL, "id": "g"}, "source is 'embedded' but model.id/model.path", MODEL),
    R("ModelSpec", "_source_fields", {**MODEL, "source": "local", "path": "m", "id": "g"}, "model.id is only read",
      {**MODEL, "source": "local", "path": "m"}),
    R("ModelSpec", "_source_fields", {**MODEL, "source": "hf", "id": "g", "path": "m"}, "model.path is only read",
      {**MODEL, "source": "hf", "id": "g"}),
    R("DataSpec", "_path_rules", {"kind": "fictional", "path": "x.json"}, "data.kind is 'fictional'", {"kind": "fictional"}),
    R("DataSpec", "_path_rules", {"kind": "squad_json"}, "data.path is not set", {"kind": "squad_json", "path": "x.json"}),
    R("DataSpec", "_path_rules", {"questions_per_passage": 4}, ">= 5", {"questions_per_passage": 5}),
    # the fictional generator's names run out: offset + n_passages is bounded
    R("DataSpec", "_path_rules", {"offset": 9_999, "n_passages": 2}, "more than the 10000 fictional passages",
      {"offset": 9_998, "n_passages": 2}),
    R("SelfEditSpec", "_template_rules", {"prompt": "custom"}, "template is not set",
      {"prompt": "custom", "template": "{passage}"}),
    R("SelfEditSpec", "_template_rules", {"prompt": "custom", "template": "{title}"}, r"placeholder \{passage\}",
      {"prompt": "custom", "template": "{title} {passage}"}),
    R("SelfEditSpec", "_template_rules", {"prompt": "rewrite", "template": "{passage}"}, "only read when",
      {"prompt": "rewrite"}),
    R("LoraSpec", "_targets", {"target_modules": []}, "must name at least one module", {"target_modules": ["q_proj"]}),
    R("LoraSpec", "_targets", {"alpha": 8}, "alpha.*is set \\(8\\) but rank is not", {"alpha": 8, "rank": 4}),
    R("EvaluationSpec", "_has_question", {"answer_prompt": "A:"}, r"placeholder \{question\}",
      {"answer_prompt": "Q: {question} A:"}),
    # the answer prompt may show the passage title ({title}, the reference's "Topic:" line), nothing else
    R("EvaluationSpec", "_has_question", {"answer_prompt": "{passage}\nQ: {question} A:"},
      r"unknown placeholder\(s\) \{passage\}", {"answer_prompt": "Topic: {title}\nQ: {question} A:"}),
    R("JudgeGrader", "_user_placeholders", {"base_url": "http://j", "model": "m", "user_prompt": "{question} {pred}"},
      r"placeholder \{golds\} or \{gold\}",
      {"base_url": "http://j", "model": "m", "user_prompt": "{question} {gold} {pred}"}),
    # the graded question may carry the passage title (the reference's "Topic:" line), nothing else
    R("JudgeGrader", "_question_format", {"base_url": "http://j", "model": "m", "question_format": "{passage}: {question}"},
      r"no placeholder but \{question\} and \{title\}",
      {"base_url": "http://j", "model": "m", "question_format": "Topic: {title}\n{question}"}),
    R("RLSpec", "_keep_rules", {"train_data": EVAL8, "keep": "top_m"}, "top_m is not set",
      {"train_data": EVAL8, "keep": "top_m", "top_m": 2}),
    R("RLSpec", "_keep_rules", {"train_data": EVAL8, "keep": "top_m", "top_m": 6}, r"larger than rl.k \(5\)",
      {"train_data": EVAL8, "keep": "top_m", "top_m": 5}),
    R("RLSpec", "_keep_rules", {"train_data": EVAL8, "top_m": 2}, "only read when rl.keep is 'top_m'",
      {"train_data": EVAL8}),
    R("CPTSpec", "_unique", {"conditions": []}, "at least one condition", {"conditions": ["base"]}),
    R("CPTSpec", "_unique", {"conditions": ["seal", "seal"]}, "listed twice: seal", {"conditions": ["seal"]}),
    R("CPTSpec", "_lora_only_for_lora", {"method": "full", "lora": {"rank": 4, "alpha": 8}}, "only read when cpt.method",
      {"method": "lora", "lora": {"rank": 4, "alpha": 8}}),
    R("ExperimentSpec", "_unique", {"model": MODEL, "conditions": []}, "at least one condition",
      {"model": MODEL, "conditions": ["base"]}),
    R("ExperimentSpec", "_unique", {"model": MODEL, "conditions": ["base", "base"]}, "listed twice",
      {"model": MODEL, "conditions": ["base"]}),
    # the evaluation split and the RL training split must not overlap (same generator, overlapping offsets) ...
    R("ExperimentSpec", "_sections_agree",
      {"model": MODEL, "data": EVAL8, "rl": {"train_data": {"kind": "fictional", "offset": 7, "n_passages": 2}}},
      "rl.train_data: passages 7–8 overlap the evaluation passages 0–7",
      {"model": MODEL, "data": EVAL8, "rl": {"train_data": {"kind": "fictional", "offset": 8, "n_passages": 2}}}),
    # ... nor when read from the same file
    R("ExperimentSpec", "_sections_agree",
      {"model": MODEL, "data": {"kind": "seal_json", "path": "s.json", "n_passages": 5},
       "rl": {"train_data": {"kind": "seal_json", "path": "s.json", "offset": 4}}}, "overlap the evaluation passages 0–4",
      {"model": MODEL, "data": {"kind": "seal_json", "path": "s.json", "n_passages": 5},
       "rl": {"train_data": {"kind": "seal_json", "path": "s.json", "offset": 5}}}),
    R("ExperimentSpec", "_sections_agree",
      {"model": MODEL, "self_edit": {"sampling": {"temperature": 0}}, "rl": {"train_data": {**EVAL8, "offset": 8}}},
      r"rl.k: asks for 5 self-edits .* \(greedy\)",
      {"model": MODEL, "self_edit": {"sampling": {"temperature": 0}}, "rl": {"train_data": {**EVAL8, "offset": 8},
                                                                            "k": 1}}),
    R("ExperimentSpec", "_sections_agree", {"model": MODEL, "cpt": {}}, "cpt.conditions: lists 'seal'",
      {"model": MODEL, "cpt": {"conditions": ["base", "passage"]}}),
    R("ExperimentSpec", "_sections_agree", {"model": MODEL, "continual": {"start": "seal"}}, "continual.start: is 'seal'",
      {"model": MODEL, "continual": {"start": "base"}}),
    R("ExperimentSpec", "_sections_agree", {"model": MODEL, "continual": {"n_passages": 9}},
      "continual.n_passages: 9 is more than the 8", {"model": MODEL, "continual": {"n_passages": 8}}),
    R("ExperimentSpec", "_sections_agree", {"model": MODEL, "cpt": {"conditions": ["base"], "n_passages": 9}},
      "cpt.n_passages: 9 is more than the 8", {"model": MODEL, "cpt": {"conditions": ["base"], "n_passages": 8}}),
    # --- executor -----------------------------------------------------------------------------------------------
    R("RayExecutor", "_gpus", {"workers": 1, "num_gpus_per_worker": -1}, ">= 0",
      {"workers": 1, "num_gpus_per_worker": 0}),
    R("RayExecutor", "_address", {"workers": 1, "address": "localhost"}, "is not 'auto'",
      {"workers": 1, "address": "localhost:6379"}),
    R("RayExecutor", "_resources_agree", {"workers": 1, "num_gpus_per_worker": 1.5}, "share of one GPU",
      {"workers": 1, "num_gpus_per_worker": 2}),
    R("RayExecutor", "_resources_agree", {"workers": 1, "threads_per_worker": 4}, "oversubscribe",
      {"workers": 1, "threads_per_worker": 4, "num_cpus_per_worker": 4}),
    R("LocalExecutor", "_workers", {"workers": 0}, "at least 1, or auto", {"workers": 2}),
    R("LocalExecutor", "_workers", {"workers": 257}, "more than 256", {"workers": 256}),
    R("RayExecutor", "_gpus", {"workers": 1, "num_gpus_per_worker": 17}, "at most 16",
      {"workers": 1, "num_gpus_per_worker": 16}),
    # --- fewshot ------------------------------------------------------------------------------------------------
    R("TaskSelectionSpec", "_ids", {"split": "train", "ids": []}, "at least one task id",
      {"split": "train", "ids": ["6150a2bd"]}),
    R("TaskSelectionSpec", "_ids", {"split": "train", "ids": ["6150A2BD"]}, "not 8-hex-digit",
      {"split": "train", "ids": ["6150a2bd"]}),
    R("TaskSelectionSpec", "_ids", {"split": "train", "ids": ["6150a2bd", "6150a2bd"]}, "listed twice",
      {"split": "train", "ids": ["6150a2bd"]}),
    R("TaskSelectionSpec", "_one_way", {"split": "train", "ids": ["6150a2bd"], "n": 1}, "exactly one of",
      {"split": "train", "ids": ["6150a2bd"]}),
    R("TaskSelectionSpec", "_one_way", {"split": "train", "ids": ["6150a2bd"], "max_cells": 9}, "max_cells only",
      {"split": "train", "n": 1, "max_cells": 9}),
    # the evaluation tasks must not overlap the training tasks
    R("FewShotTasksSpec", "_disjoint",
      {"train": {"split": "eval", "ids": ["358ba94e"]}, "eval": {"split": "eval", "ids": ["358ba94e"]}},
      "overlap: 358ba94e",
      {"train": {"split": "eval", "ids": ["66e6c45b"]}, "eval": {"split": "eval", "ids": ["358ba94e"]}}),
    R("FewShotTasksSpec", "_disjoint", {"train": {"split": "eval", "n": 2}, "eval": {"split": "eval", "n": 2}},
      "both draw from split 'eval'", {"train": {"split": "train", "n": 2}, "eval": {"split": "eval", "n": 2}}),
    R("FewShotSelfEditSpec", "_placeholder", {"template": "Pick one."}, r"\{demonstrations\}",
      {"template": "{demonstrations} Pick one."}),
    R("FewShotSelfEditSpec", "_greedy", {"sampling": {"temperature": 0}}, r"\(greedy\)",
      {"sampling": {"temperature": 0}, "n_train": 1, "n_eval": 1}),
    R("FewShotInnerLoopSpec", "_rules", {"batch_size": 5, "max_examples": 4}, "larger than inner_loop.max_examples",
      {"batch_size": 4, "max_examples": 4}),
    # the inner loop's lr and epochs are a self-edit's defaults: within what a self-edit may choose
    R("FewShotInnerLoopSpec", "_rules", {"lr": 0.02}, r"lr: 0.02 is above 0.01", {"lr": 0.01}),
    R("FewShotInnerLoopSpec", "_rules", {"epochs": 11}, "epochs: 11 is above 10", {"epochs": 10}),
    R("FewShotEvaluationSpec", "_unique_families", {"vote_families": ["size", "size"]}, "listed twice: size",
      {"vote_families": ["size"]}),
    R("FewShotSpec", "_conditions", {"model": MODEL, "conditions": []}, "at least one condition",
      {"model": MODEL, "conditions": ["icl"]}),
    R("FewShotSpec", "_conditions", {"model": MODEL, "conditions": ["icl", "icl"]}, "listed twice: icl",
      {"model": MODEL, "conditions": ["icl"]}),
    # the reference's JSON needs the reference's prompt: the built-in one asks for ours
    R("FewShotSelfEditSpec", "_template_asks_for_the_format", {"json_format": "reference"},
      "template is null", {"json_format": "reference", "template": "{demonstrations} JSON please"}),
    # greedy re-sampling would repeat the same invalid self-edit
    R("FewShotSelfEditSpec", "_greedy",
      {"sampling": {"temperature": 0}, "n_train": 1, "n_eval": 1, "resample": {"max_tries": 2}},
      "same invalid self-edit", {"sampling": {"temperature": 0}, "n_train": 1, "n_eval": 1, "resample": {"max_tries": 1}}),
    # constrained decoding runs inside Hugging Face generate, not on a completions server
    R("FewShotSelfEditSpec", "_constrained_needs_hf", {"decoding": "json_schema", "backend": {"kind": "openai"}},
      "needs self_edit.backend.kind: hf", {"decoding": "json_schema", "backend": {"kind": "hf"}}),
    # a learning-rate menu is a grammar: in range, no repeats, only under constrained decoding of our format
    R("FewShotSelfEditSpec", "_menu", {"learning_rates": [0.003, 0.02]}, r"0.02 is outside 0 < learning rate <= 0.01",
      {"learning_rates": [0.003, 0.01], "decoding": "json_schema"}),
    R("FewShotSelfEditSpec", "_menu", {"learning_rates": [0.003, 0.003]}, "lists a learning rate twice",
      {"learning_rates": [0.003], "decoding": "json_schema"}),
    R("FewShotSelfEditSpec", "_menu_is_a_grammar", {"learning_rates": [0.001]}, "needs decoding: json_schema",
      {"learning_rates": [0.001], "decoding": "json_schema"}),
    # --- the sampling backend (both domains) ---------------------------------------------------------------------
    R("ServeSpec", "_command", {"command": []}, "non-empty list", {"command": ["srv", "{model}"]}),
    R("ServeSpec", "_command", {"command": ["srv", "{nope}"]}, r"unknown placeholder\(s\) \{nope\}",
      {"command": ["srv", "{port}"]}),
    R("OpenAIBackend", "_url", {"base_url": "gpu:8000/v1"}, "must start with http", {"base_url": "http://gpu:8000/v1"}),
    R("OpenAIBackend", "_env", {"api_key_env": "sk-123"}, "NAME of an environment variable", {"api_key_env": "KEY"}),
    R("OpenAIBackend", "_one_server", {"base_url": "http://g/v1", "serve": {"port": 9}}, "not both",
      {"base_url": "http://g/v1"}),
    R("OpenAIBackend", "_one_server", {"model": "m"}, "only read with base_url", {"model": "m", "base_url": "http://g/v1"}),
    # the reference's step gate needs a limit to compare with
    R("FewShotInnerLoopSpec", "_step_limit", {"step_limit_rule": "skip", "max_steps": None}, "max_steps is null",
      {"step_limit_rule": "skip", "max_steps": 375}),
    # the reference's voting has fixed transforms: vote_families would be ignored
    R("FewShotEvaluationSpec", "_voting", {"voting": "reference", "vote_families": ["basic", "size"]},
      "only read when evaluation.voting is 'ours'", {"voting": "reference"}),
    # system messages (the reference's prompt format, a self-edit system prompt) need a chat template
    R("FewShotSpec", "_messages_need_a_chat_template", {"model": MODEL, "evaluation": {"prompt_format": "reference"}},
      "evaluation.prompt_format: is 'reference'",
      {"model": {"chat_template": True}, "evaluation": {"prompt_format": "reference"}}),
    R("FewShotSpec", "_messages_need_a_chat_template", {"model": MODEL, "self_edit": {"system": "Be brief."}},
      "self_edit.system: a system message needs", {"model": {"chat_template": True}, "self_edit": {"system": "Be brief."}}),
]


def _field_value(info, data: dict, name: str) -> Any:
    """One field's value as validation would make it, without running the owning model's own validators."""
    if name not in data:
        return info.get_default(call_default_factory=True)
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation).validate_python(data[name])


def _call_validator(rule: Rule, data: dict):
    """Run exactly `rule.validator` on `data` (every field validated, the other validators of the model not)."""
    model = MODELS[rule.model]
    decorators = model.__pydantic_decorators__
    if rule.validator in decorators.field_validators:
        (field,) = decorators.field_validators[rule.validator].info.fields
        value = _field_value(model.model_fields[field], data, field)
        return decorators.field_validators[rule.validator].func(value)
    values = {n: _field_value(info, data, n) for n, info in model.model_fields.items()}
    instance = model.model_construct(_fields_set=set(data), **values)
    return decorators.model_validators[rule.validator].func(instance)


def test_every_validator_has_a_raise_pass_pair():
    covered = {(r.model, r.validator) for r in RULES}
    missing = [f"{m}.{v}" for m, v in ALL_VALIDATORS if (m, v) not in covered]
    assert not missing, f"validators without a raise/pass pair in RULES: {missing}"
    unknown = sorted(covered - set(ALL_VALIDATORS))
    assert not unknown, f"RULES names validators that do not exist: {unknown}"


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rule_raises(rule):
    with pytest.raises(ValidationError, match=rule.message):
        MODELS[rule.model].model_validate(rule.bad)
    with pytest.raises(ValueError, match=rule.message):  # and it is this validator that says so
        _call_validator(rule, rule.bad)


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rule_passes(rule):
    MODELS[rule.model].model_validate(rule.good)
    _call_validator(rule, rule.good)
