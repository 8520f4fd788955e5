"""Self-edit prompts for knowledge incorporation (our own wording; `custom` lets a spec paste any text)."""

from __future__ import annotations

from seal_repro.spec.self_edit import SelfEditSpec

_HEAD = "{title}\n{passage}\n\n"

TEMPLATES: dict[str, str] = {
    "implications": _HEAD + "List several statements that follow from the passage above, one per line.\n",
    "implications-long": _HEAD
    + "Write a long list of facts and consequences that follow from the passage above, one per line. "
    "Restate every name, date and number it contains.\n",
    "implications-very-long": _HEAD
    + "Write a very long and thorough list of facts, consequences and restatements of the passage above, "
    "one per line, so that someone who never reads the passage could answer any question about it.\n",
    "rewrite": _HEAD + "Rewrite the passage above in your own words, keeping every fact.\n",
    "self-qa": _HEAD
    + "Write questions about the passage above, each followed by its answer, in the form "
    "'Question N: ...' then 'Answer: ...'.\n",
}


def self_edit_prompt(spec: SelfEditSpec, title: str, passage: str) -> str:
    template = spec.template if spec.prompt == "custom" else TEMPLATES[spec.prompt]
    return template.replace("{title}", title).replace("{passage}", passage)


def uses_chat_template(spec) -> bool:
    """Whether self-edit prompts go through the chat template (the self_edit section may differ from the model's)."""
    own = spec.self_edit.chat_template
    return spec.model.chat_template if own is None else own
