"""Constrained self-edit decoding (spec `self_edit.decoding: json_schema`): generation can only write a self-edit
that parses under the spec's `self_edit.json_format`, with every value in range.

The grammar is a regular expression over the JSON text, compiled against the tokenizer's vocabulary by the
`outlines` library (its `outlines_core` backend) into a transformers logits processor that masks every token
leaving the language; after a complete object only EOS is allowed. A regex rather than a JSON schema: the schema
compilers of these libraries check types but not numeric ranges, so a schema would still let through a learning
rate of 10 or 900 epochs. The language is finite (bounded whitespace and digits), so a self-edit always ends; it
can still be cut by `sampling.max_new_tokens` if that is too short for it.

The key order is fixed (the one the prompts show) and every training key is written: a subset of what the
parsers accept. `outlines` is an optional import (pyproject dependency; tests skip without it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from seal_repro.fewshot.self_edit import REFERENCE_FLAGS, REFERENCE_STRATEGIES

WS = r"[ \n]{0,6}"  # room for the reference prompt's pretty-printed layout (newline + 4 spaces)


def _obj(items: list[tuple[str, str]]) -> str:
    body = f"{WS},{WS}".join(f'"{re.escape(k)}"{WS}:{WS}{v}' for k, v in items)
    return r"\{" + WS + body + WS + r"\}"


BOOL = "(true|false)"
# ours: 0 < learning_rate <= 0.01 written as a decimal (0.01, or 0.00 then up to 5 digits ending in a non-zero),
# epochs 1-10 (seal_repro/spec/arc_self_edit.py MAX_LEARNING_RATE, MAX_EPOCHS).
OURS_LR = r"(0\.01|0\.00[0-9]{0,4}[1-9])"
OURS_EPOCHS = r"([1-9]|10)"
# reference: any finite number the reference trains with; kept to 0 < lr < 1 (a decimal or 1e-4 style) and whole
# epochs 0-99, what its prompt asks for ("learning_rate (float)", "num_train_epochs (integer)").
REFERENCE_LR = r"(0\.[0-9]{0,7}[1-9]|[1-9](\.[0-9]{1,3})?[eE]-0?[1-9])"
REFERENCE_EPOCHS = r"([0-9]|[1-9][0-9])"


def decimal(x: float) -> str:
    """`x` as a plain decimal, the way a prompt lists it (0.003, not 3e-03)."""
    return f"{x:.10f}".rstrip("0").rstrip(".")


def self_edit_regex(json_format: str, learning_rates: Sequence[float] | None = None) -> str:
    """The language of constrained self-edits of a `self_edit.json_format`; `learning_rates` (ours only): the only
    values its learning rate may take, written as `decimal` writes them."""
    if json_format == "reference":
        flags = _obj([(k, BOOL) for k in REFERENCE_FLAGS])
        strategies = "|".join(re.escape(s) for s in REFERENCE_STRATEGIES)
        training = _obj([("strategy", f'"({strategies})"'), ("learning_rate", REFERENCE_LR),
                         ("num_train_epochs", REFERENCE_EPOCHS)])
        return _obj([("data_generation", flags), ("training", training)])
    augs = _obj([(k, BOOL) for k in ("basic", "size", "chain", "repeat")])
    lr = OURS_LR if learning_rates is None else "(" + "|".join(re.escape(decimal(x)) for x in learning_rates) + ")"
    training = _obj([("loss_on", '"(all_tokens|output_tokens)"'), ("learning_rate", lr),
                     ("epochs", OURS_EPOCHS)])
    return _obj([("augmentations", augs), ("training", training)])


def available() -> bool:
    try:
        import outlines  # noqa: F401  (heavy, optional: checked, not used, here)
    except ImportError:
        return False
    return True


def json_constraint(model, tokenizer, json_format: str,
                    learning_rates: Sequence[float] | None = None) -> Callable[[], object]:
    """A factory of fresh logits processors (one per generation batch: each keeps per-row state) restricting output
    to `self_edit_regex(json_format, learning_rates)`; pass it as `constraint=` to seal_repro.engine.generate_details. The
    vocabulary index is built once here (seconds for a 128K vocabulary)."""
    try:  # heavy and optional: imported only when a spec asks for constrained decoding
        import outlines
        from outlines.backends.outlines_core import OutlinesCoreBackend, OutlinesCoreLogitsProcessor
        from outlines_core import Index
    except ImportError as err:
        raise ImportError("self_edit.decoding: json_schema needs the `outlines` package (pip install outlines)") \
            from err
    backend = OutlinesCoreBackend(outlines.from_transformers(model, tokenizer))
    index = Index(self_edit_regex(json_format, learning_rates), backend.vocabulary)
    return lambda: OutlinesCoreLogitsProcessor(index, backend.tensor_library_name)
