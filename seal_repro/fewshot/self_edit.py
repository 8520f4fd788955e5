"""The ARC self-edit: a JSON object in which the model chooses its own test-time-training setup.

    {"augmentations": {"basic": true, "size": false, "chain": false, "repeat": true},
     "training": {"loss_on": "output_tokens", "learning_rate": 0.0001, "epochs": 3}}

All four augmentation flags are required (choosing them is the point); `training` and each of its
keys may be left out, and the run's defaults (spec `inner_loop`) fill the gaps.

`parse_self_edit` reads model output and never raises. Parsing rules:
- the object may sit anywhere in the text: prose around it and ```json fences are fine;
- it must be strict JSON: no trailing commas, comments, single quotes, NaN/Infinity or repeated keys
  (a model that writes JSON loosely should learn not to; a lenient repair could guess wrong);
- exactly one well-formed JSON object: brace-delimited prose that is not JSON (e.g. "{x}") is
  ignored, but two JSON objects are ambiguous and rejected;
- values are checked strictly: `true` not "true", `3` not 3.0 or "3" (a float learning rate may be written as an int);
- at most 20,000 characters and 8 levels of nesting are read.

`self_edit.schema: reference` reads the reference implementation's JSON instead (`parse_reference_self_edit`),
with its defaults and its failures (few-shot/self-edit.py:458-555):

    {"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false,
                         "use_chain_augmentations": false, "use_repeat_augmentations": true},
     "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.0001, "num_train_epochs": 3}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pydantic import ValidationError

from seal_repro.fewshot.formats import OURS, PromptFormat
from seal_repro.fewshot.tasks import Task
from seal_repro.spec.arc_self_edit import (  # noqa: F401  (re-exported: the self-edit's schema, with its parser)
    MAX_EPOCHS,
    MAX_LEARNING_RATE,
    PLACEHOLDER,
    Augmentations,
    LossOn,
    SelfEdit,
    TrainingChoice,
)

MAX_CHARS = 20_000
MAX_NESTING = 8


@dataclass(frozen=True)
class ParsedSelfEdit:
    self_edit: SelfEdit
    json_text: str  # the span of the output that held the object
    ok: bool = True


@dataclass(frozen=True)
class FailedSelfEdit:
    reason: str
    ok: bool = False


def _regions(text: str) -> list[tuple[int, int, int]]:
    """(start, end, nesting depth) of every top-level {...} region; quotes count only inside one."""
    regions, depth, deepest, start, in_string, escaped = [], 0, 0, 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif depth == 0:
            if ch == "{":
                start, depth, deepest = i, 1, 1
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                regions.append((start, i + 1, deepest))
    if depth > 0:  # never closed: still worth a decode attempt, for its error message
        regions.append((start, len(text), deepest))
    return regions


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"repeated key {dup[0]!r}")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"{name} is not a JSON number")


def _decode(fragment: str) -> dict:
    return json.loads(fragment, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "self-edit"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def parse_self_edit(text: str) -> ParsedSelfEdit | FailedSelfEdit:
    """Find, decode and validate the self-edit in model output; every failure comes back with a reason."""
    if not isinstance(text, str):
        return FailedSelfEdit(f"expected text, got {type(text).__name__}")
    if not text.strip():
        return FailedSelfEdit("empty output")
    if len(text) > MAX_CHARS:
        return FailedSelfEdit(f"output is {len(text)} characters; at most {MAX_CHARS} are read")
    found: list[tuple[dict, str]] = []
    first_error = None
    for start, end, deepest in _regions(text):
        fragment = text[start:end]
        if deepest > MAX_NESTING:
            first_error = first_error or f"JSON nested {deepest} levels deep (at most {MAX_NESTING}) at character {start}"
            continue
        try:
            found.append((_decode(fragment), fragment))
        except (ValueError, RecursionError) as err:
            first_error = first_error or f"invalid JSON at character {start}: {err}"
    if not found:
        return FailedSelfEdit(first_error or "no JSON object in the output")
    if len(found) > 1:
        return FailedSelfEdit(f"found {len(found)} JSON objects; expected exactly one")
    obj, fragment = found[0]
    try:
        return ParsedSelfEdit(SelfEdit.model_validate(obj, strict=True), fragment)
    except ValidationError as err:
        return FailedSelfEdit(_describe(err))


DEFAULT_TEMPLATE = """\
You are preparing a small language model to solve a grid puzzle. Each grid is rows of digits 0-9 (each digit a colour), and every input grid becomes its output grid by the same hidden rule:

{demonstrations}\
Before it answers, the model will be fine-tuned on these examples. Choose how:
- augmentations.basic (true/false): also train on rotated, flipped and transposed copies of the examples
- augmentations.size (true/false): also train on copies scaled up 2x and 3x
- augmentations.chain (true/false): also train on copies rotated or flipped and then scaled up 2x
- augmentations.repeat (true/false): also train on copies with the examples in another order
- training.loss_on: "all_tokens" (learn from the whole text) or "output_tokens" (learn from the answer grid only)
- training.learning_rate: a number above 0 and at most 0.01
- training.epochs: a whole number from 1 to 10

Reply with one JSON object and nothing else, for example:
{"augmentations": {"basic": true, "size": false, "chain": false, "repeat": true}, "training": {"loss_on": "output_tokens", "learning_rate": 0.0001, "epochs": 3}}
"""



def self_edit_prompt(task: Task, template: str | None = None, fmt: PromptFormat = OURS) -> str:
    """The prompt asking for a self-edit: `template` with {demonstrations} replaced by the task's examples, written
    in `fmt`'s self-edit format (formats.PromptFormat.self_edit_demonstrations).

    Only that placeholder is substituted (no str.format), so a template may show JSON braces freely.
    The test input is not shown: the self-edit is chosen from the demonstrations alone.
    """
    template = DEFAULT_TEMPLATE if template is None else template
    if PLACEHOLDER not in template:
        raise ValueError(f"a self-edit template must contain the placeholder {PLACEHOLDER}")
    return template.replace(PLACEHOLDER, fmt.self_edit_demonstrations(task.train))


# ------------------------------------------------------------------------------------------------ the reference's

REFERENCE_FLAGS = {"use_basic_augmentations": "basic", "use_size_augmentations": "size",
                   "use_chain_augmentations": "chain", "use_repeat_augmentations": "repeat"}
REFERENCE_STRATEGIES = {"train_using_all_tokens": "all_tokens", "train_using_output_tokens": "output_tokens"}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _hashable(value) -> bool:
    return not isinstance(value, (list, dict))


def parse_reference_self_edit(text: str) -> ParsedSelfEdit | FailedSelfEdit:
    """The reference's self-edit, resolved as few-shot/self-edit.py consumes it; the result's `training` holds
    the reference's raw choices (any learning rate from 0, epochs 0 or fractional), not our schema's bounds.

    Invalid (the reference samples again, self-edit.py:461-464, or crashes; here: a failed pair, or another sample
    under `self_edit.resample`):
    - the whole output is not one JSON document (`json.loads` of the text; prose or fences around it fail);
    - not an object, or `data_generation` / `training` missing or not objects, or holding lists/objects as values
      (the reference crashes on these: self-edit.py:467-470, 478);
    - a learning rate that reaches the trainer and is not a finite number >= 0, or an epoch count that reaches it
      and is not a finite number (the reference crashes in the trainer).
    Valid, with the reference's defaults (self-edit.py:508-555):
    - a flag is on when its value is truthy (the string "false" is on); any of the four missing: no augmentation
      and 0 epochs;
    - strategy, learning_rate or num_train_epochs missing: 0 epochs, learning rate 0, loss on all tokens;
    - a strategy other than the two: 0 epochs;
    - a negative epoch count trains for 0 epochs. 0 epochs (or learning rate 0) is an untrained adapter: the round
      predicts with the model as it is, as the reference's zero LoRA does.
    """
    if not isinstance(text, str) or not text.strip():
        return FailedSelfEdit("empty output")
    if len(text) > MAX_CHARS:
        return FailedSelfEdit(f"output is {len(text)} characters; at most {MAX_CHARS} are read")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as err:
        return FailedSelfEdit(f"not one JSON document: {err}")
    if not isinstance(obj, dict):
        return FailedSelfEdit(f"a JSON {type(obj).__name__}, not an object")
    dg, tr = obj.get("data_generation"), obj.get("training")
    for key, value in (("data_generation", dg), ("training", tr)):
        if not isinstance(value, dict):
            return FailedSelfEdit(f"{key}: missing or not an object")
        bad = [k for k, v in value.items() if not _hashable(v)]
        if bad:
            return FailedSelfEdit(f"{key}.{bad[0]}: a list or object (the reference fails on it)")
    # In the reference's order: a missing flag zeroes the epochs (self-edit.py:515-523), a missing training key
    # zeroes epochs and learning rate (:542-546), an unknown strategy zeroes the epochs (:548-550); only the values
    # that survive reach the trainer, where a non-number or negative one crashes it.
    flags_ok = all(k in dg for k in REFERENCE_FLAGS)
    flags = {name: bool(dg[k]) if flags_ok else False for k, name in REFERENCE_FLAGS.items()}
    if all(k in tr for k in ("strategy", "learning_rate", "num_train_epochs")):
        strategy, lr, epochs = tr["strategy"], tr["learning_rate"], tr["num_train_epochs"]
    else:
        strategy, lr, epochs = "train_using_all_tokens", 0, 0
    if not flags_ok or strategy not in REFERENCE_STRATEGIES:
        epochs = 0
    if not _number(lr) or lr < 0:
        return FailedSelfEdit(f"training.learning_rate: {lr!r} is not a finite number >= 0 (the reference's trainer "
                              "fails on it)")
    if not _number(epochs):
        return FailedSelfEdit(f"training.num_train_epochs: {epochs!r} is not a finite number (the reference fails "
                              "on it)")
    epochs = max(epochs, 0)
    strategy = strategy if strategy in REFERENCE_STRATEGIES else "train_using_output_tokens"  # moot at 0 epochs
    training = TrainingChoice.model_construct(loss_on=REFERENCE_STRATEGIES[strategy], learning_rate=float(lr),
                                              epochs=epochs)
    edit = SelfEdit.model_construct(augmentations=Augmentations.model_construct(**flags), training=training)
    return ParsedSelfEdit(edit, text.strip())


def parser_for(schema: str):
    """The parser of a spec's `self_edit.schema`: text -> ParsedSelfEdit | FailedSelfEdit."""
    return parse_reference_self_edit if schema == "reference" else parse_self_edit
