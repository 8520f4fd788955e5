"""Constrained self-edit decoding (self_edit.decoding: json_schema): the grammar's language holds only valid
self-edits, and generation under it (the `outlines` library; skipped when it is not installed) always parses."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seal_repro.fewshot.constrained import available, decimal, self_edit_regex
from seal_repro.fewshot.self_edit import SelfEdit, parser_for


@pytest.mark.parametrize("json_format", ["ours", "reference"])
def test_every_string_of_the_grammar_is_a_valid_self_edit(json_format):
    regex = self_edit_regex(json_format)

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(regex, fullmatch=True))
    def check(text):
        parsed = parser_for(json_format)(text)
        assert parsed.ok, (text, parsed.reason)
        if json_format == "ours":  # bounded as our schema is: it validates as a spec's SelfEdit
            assert SelfEdit.model_validate(parsed.self_edit.model_dump()) == parsed.self_edit

    check()


def test_the_grammar_holds_the_prompts_examples():
    ours = ('{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": true}, '
            '"training": {"loss_on": "output_tokens", "learning_rate": 0.0001, "epochs": 3}}')
    assert re.fullmatch(self_edit_regex("ours"), ours)
    reference = ('{\n  "data_generation": {\n    "use_basic_augmentations": true,\n    "use_size_augmentations": false,'
                 '\n    "use_chain_augmentations": false,\n    "use_repeat_augmentations": true\n  },\n  "training": {\n'
                 '    "strategy": "train_using_output_tokens",\n    "learning_rate": 1e-4,\n    "num_train_epochs": 2\n'
                 '  }\n}')
    assert re.fullmatch(self_edit_regex("reference"), reference)
    assert not re.fullmatch(self_edit_regex("ours"), ours.replace("0.0001", "0.02"))  # above the bound
    assert not re.fullmatch(self_edit_regex("ours"), ours.replace('"epochs": 3', '"epochs": 11'))


def test_a_learning_rate_menu_admits_exactly_its_values():
    se = ('{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": true}, '
          '"training": {"loss_on": "output_tokens", "learning_rate": LR, "epochs": 3}}')
    menu = self_edit_regex("ours", [0.001, 0.003])
    assert re.fullmatch(menu, se.replace("LR", "0.001")) and re.fullmatch(menu, se.replace("LR", "0.003"))
    for other in ("0.002", "0.0003", "0.01", "0.0031", "3e-3", "0.00"):
        assert not re.fullmatch(menu, se.replace("LR", other)), other
    assert re.fullmatch(self_edit_regex("ours"), se.replace("LR", "0.002"))  # no menu: any rate in range
    assert [decimal(x) for x in (0.003, 1e-4, 0.01, 2.5e-3)] == ["0.003", "0.0001", "0.01", "0.0025"]


@pytest.mark.skipif(not available(), reason="the outlines package is not installed")
def test_constrained_sampling_under_a_menu_writes_only_its_rates(tiny_spec, tiny_loaded, task):
    from seal_repro.fewshot.self_edits import sample_self_edits

    model, tok = tiny_loaded
    data = tiny_spec.model_dump()
    data["self_edit"].update(decoding="json_schema", template="{demonstrations}Choose:", learning_rates=[0.001, 0.003],
                             sampling={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 400})
    spec = type(tiny_spec).model_validate(data)
    rows = sample_self_edits(model, tok, [task, task], 4, spec, seed=0)
    rates = {parser_for("ours")(r["text"]).self_edit.training.learning_rate for r in rows}
    assert rates <= {0.001, 0.003} and len(rows) == 8, [r["text"] for r in rows]


@pytest.mark.skipif(not available(), reason="the outlines package is not installed")
@pytest.mark.parametrize("json_format", ["ours", "reference"])
def test_constrained_sampling_always_parses_on_a_tiny_random_model(json_format, tiny_spec, tiny_loaded, task):
    """A random 2-layer model writes noise when free; constrained, every sample is a valid self-edit."""
    from seal_repro.fewshot.self_edits import sample_self_edits

    model, tok = tiny_loaded
    data = tiny_spec.model_dump()
    data["self_edit"].update(decoding="json_schema", json_format=json_format, template="{demonstrations}Choose:",
                             sampling={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 400})
    spec = type(tiny_spec).model_validate(data)
    rows = sample_self_edits(model, tok, [task, task], 4, spec, seed=0)
    assert len(rows) == 8 and all(not r["truncated"] for r in rows)
    assert all(parser_for(json_format)(r["text"]).ok for r in rows), [r["text"] for r in rows]
    free = sample_self_edits(model, tok, [task], 2, tiny_spec, seed=0)
    assert not any(parser_for("ours")(r["text"]).ok for r in free)  # the same model, unconstrained
