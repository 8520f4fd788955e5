import json

import pytest

from seal_repro.fewshot.self_edit import (
    DEFAULT_TEMPLATE,
    FailedSelfEdit,
    ParsedSelfEdit,
    parse_self_edit,
    self_edit_prompt,
)
from seal_repro.fewshot.tasks import Task

GOOD = {
    "augmentations": {"basic": True, "size": False, "chain": False, "repeat": True},
    "training": {"loss_on": "output_tokens", "learning_rate": 0.0001, "epochs": 3},
}
GOOD_TEXT = json.dumps(GOOD)


def _with(**changes):
    d = json.loads(GOOD_TEXT)
    for path, value in changes.items():
        *head, last = path.split("__")
        node = d
        for key in head:
            node = node[key]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return json.dumps(d)


_DROP = object()

# (output text, fragment the rejection reason must contain)
REJECTED = [
    ("", "empty output"),
    ("   \n\t", "empty output"),
    ("I would use rotations and three epochs.", "no JSON object"),
    ("augmentations: basic", "no JSON object"),
    ("{augmentations: {basic: true}}", "invalid JSON"),
    ("{'augmentations': {'basic': True}}", "invalid JSON"),
    (GOOD_TEXT[:-1] + ",}", "invalid JSON"),  # trailing comma
    (GOOD_TEXT[:40], "invalid JSON"),  # cut off mid-object
    ('{"augmentations": {"basic": true, "basic": false, "size": true, "chain": true, "repeat": true}}', "repeated key 'basic'"),
    (_with(training__learning_rate=float("nan")), "NaN is not a JSON number"),
    (_with(training__learning_rate=0.5), "training.learning_rate"),
    (_with(training__learning_rate=0), "training.learning_rate"),
    (_with(training__learning_rate=-1e-4), "training.learning_rate"),
    (_with(training__learning_rate="1e-4"), "training.learning_rate"),
    (_with(training__epochs=0), "training.epochs"),
    (_with(training__epochs=11), "training.epochs"),
    (_with(training__epochs=3.0), "training.epochs"),
    (_with(training__epochs="3"), "training.epochs"),
    (_with(training__epochs=True), "training.epochs"),
    (_with(training__loss_on="some_tokens"), "training.loss_on"),
    (_with(augmentations__basic="true"), "augmentations.basic"),
    (_with(augmentations__size=1), "augmentations.size"),
    (_with(augmentations__chain=None), "augmentations.chain"),
    (_with(augmentations__repeat=_DROP), "augmentations.repeat: Field required"),
    (_with(augmentations__colour=True), "augmentations.colour: Extra inputs"),
    (_with(extra_key=1), "extra_key: Extra inputs"),
    ('{"augmentation": {"basic": true}}', "augmentations: Field required"),
    ('{"augmentations": [true, false, false, true]}', "augmentations"),
    ("{}", "augmentations: Field required"),
    ('{"a": ' * 50 + "1" + "}" * 50, "nested 50 levels deep"),
    ("[" * 5000 + "]" * 5000, "no JSON object"),
    ('{"x": ' + "[" * 5000 + "]" * 5000 + "}", "nested 5001 levels deep"),
    ("{" * 3000, "nested 3000 levels deep"),
    (GOOD_TEXT + "\n" + GOOD_TEXT, "found 2 JSON objects"),
    (GOOD_TEXT + " or maybe " + _with(training__epochs=5), "found 2 JSON objects"),
    ("\u201caugmentations\u201d: \u201cbasic\u201d", "no JSON object"),  # smart quotes, no braces
    ("{\u201caugmentations\u201d: {\u201cbasic\u201d: true}}", "invalid JSON"),
    ('{"augmentations": {"basic": true,\u200b "size": true, "chain": true, "repeat": true}}', "invalid JSON"),
    ("\x00\x01\ufffd{\ud800}", "invalid JSON"),
    ("x" * 20_001, "at most 20000"),
    (None, "expected text"),
]


@pytest.mark.parametrize("text, fragment", REJECTED, ids=[f"reject{i}" for i in range(len(REJECTED))])
def test_rejected_with_reason(text, fragment):
    result = parse_self_edit(text)
    assert isinstance(result, FailedSelfEdit) and not result.ok
    assert fragment in result.reason


ACCEPTED = [
    GOOD_TEXT,
    f"Here is my choice:\n{GOOD_TEXT}\nThis should work well.",
    f"```json\n{json.dumps(GOOD, indent=2)}\n```",
    f"Use {{x}} style braces in prose, then {GOOD_TEXT}",  # brace-delimited prose is not JSON: ignored
    f"\u2728 \u00fcber-config \ud83d\ude80 {GOOD_TEXT} \u2603",  # unicode around the object
    f"{GOOD_TEXT} }} stray closing brace",
    '{"augmentations": {"basic": true, "size": true, "chain": false, "repeat": false}, "training": {"learning_rate": 0.01}}',
    '{"augmentations": {"basic": false, "size": false, "chain": false, "repeat": false}}',  # training left to defaults
    '{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": false}, "training": {"learning_rate": 1e-3}}',
]


@pytest.mark.parametrize("text", ACCEPTED, ids=[f"accept{i}" for i in range(len(ACCEPTED))])
def test_accepted(text):
    result = parse_self_edit(text)
    assert isinstance(result, ParsedSelfEdit) and result.ok, getattr(result, "reason", "")
    assert result.json_text in text and result.json_text.startswith("{") and result.json_text.endswith("}")


def test_parsed_values_and_families():
    se = parse_self_edit(f"ok: {GOOD_TEXT}").self_edit
    assert se.families == ("basic", "repeat")
    assert se.training.epochs == 3 and se.training.learning_rate == 1e-4 and se.training.loss_on == "output_tokens"


def test_integer_learning_rate_is_a_number():
    text = '{"augmentations": {"basic": true, "size": true, "chain": true, "repeat": true}, "training": {"learning_rate": 0}}'
    assert "training.learning_rate: Input should be greater than 0" in parse_self_edit(text).reason  # read as a number


def test_to_json_round_trips():
    se = parse_self_edit(GOOD_TEXT).self_edit
    assert parse_self_edit(se.to_json()).self_edit == se
    partial = parse_self_edit('{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": false}}').self_edit
    assert "training" in partial.to_json() and parse_self_edit(partial.to_json()).self_edit == partial


def test_with_defaults_fills_only_missing_keys():
    se = parse_self_edit(
        '{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": false}, "training": {"epochs": 7}}'
    ).self_edit
    filled = se.with_defaults(loss_on="all_tokens", learning_rate=2e-4, epochs=2)
    assert (filled.training.loss_on, filled.training.learning_rate, filled.training.epochs) == ("all_tokens", 2e-4, 7)
    assert se.training.learning_rate is None  # frozen original untouched


def test_corpus_is_large_enough():
    assert len(REJECTED) >= 20


def test_parse_is_fast_on_adversarial_input():
    import time

    start = time.perf_counter()
    for text in ["{" * 19_999, '{"a":' * 4000, "{}" * 9_999, "{x}" * 6_000]:
        assert not parse_self_edit(text).ok
    assert time.perf_counter() - start < 2.0


TASK = Task(
    "00000000",
    train=((((1, 2),), ((2, 1),)), (((3, 4),), ((4, 3),))),
    test=((((5, 6),), ((6, 5),)),),
)


def test_prompt_shows_demonstrations_not_test():
    prompt = self_edit_prompt(TASK)
    assert "Input:\n12\nOutput:\n21" in prompt and "Input:\n34\nOutput:\n43" in prompt
    assert "56" not in prompt and "65" not in prompt
    for key in ("basic", "size", "chain", "repeat", "loss_on", "learning_rate", "epochs"):
        assert key in prompt
    # the example in the built-in prompt is itself a valid self-edit
    assert parse_self_edit(DEFAULT_TEMPLATE.split("for example:")[1]).ok


def test_custom_template_keeps_json_braces():
    prompt = self_edit_prompt(TASK, 'Examples:\n{demonstrations}Answer like {"augmentations": ...}')
    assert prompt.startswith("Examples:\nInput:\n12") and prompt.endswith('{"augmentations": ...}')
    with pytest.raises(ValueError, match="demonstrations"):
        self_edit_prompt(TASK, "no placeholder")
