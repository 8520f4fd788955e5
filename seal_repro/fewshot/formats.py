"""How grids and tasks become text: the spec's `evaluation.format`, one of two.

`ours` — rows of digits, no separators, a plain-text prompt in one user message (seal_repro/fewshot/grids.py,
ttt_data.format_task_prompt): the shortest text for tokenizers that give each digit its own token (SmolLM2),
which is what a CPU run pays for.

`reference` — the reference implementation's layout (few-shot/self-edit.py:409-419, eval-self-edits.py:153-165):
- a grid is numpy's `str` of the array (`PythonListGridRepresenter`, arclib/representers.py:147-149):
  `[[1 2]\\n [3 0]]`: cells separated by a space, one row per line, the whole in brackets. The reference does not
  say why; the likely reason is Llama 3's pre-tokenizer, which groups runs of up to three digits into one token,
  so `120` would be one token for three cells, while `1 2 0` is three;
- an example is `input + " -> "` and `output + "#"` (`TextExampleRepresenter(io_sep=" -> ", output_footer="#")`,
  representers.py:602-618);
- the messages (`GPTTextMessageRepresenterV2`, arclib/messagers.py:198-277): a **system** message holding the
  instruction, `"The input-output grids are provided as python arrays:\\n"` and every demonstration as
  `query + output + "\\n"`; a **user** message holding the test query (`input -> `); the answer is the output
  and `#`;
- a prediction is decoded as eval-self-edits.py:305-329 does: every `#` removed, double spaces made single, then
  `parse_numpy_from_str` (representers.py:33-66): brackets dropped, the numbers read, reshaped to
  (newlines + 1) rows. Unlike the reference, a number outside 0-9 or a side above 30 gives no grid (the
  reference would keep it as a guess that can never be right).
- the self-edit prompt shows the demonstrations in a third format (few-shot/self-edit.py:368-389):
  `Input:\\n` + rows of space-separated digits + `\\nOutput:\\n` + rows + `\\n`, one blank line after each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from seal_repro.fewshot.grids import MAX_SIDE, Grid, Pair, grid_to_text, text_to_grid
from seal_repro.fewshot.ttt_data import format_demonstrations, format_task_prompt

FormatName = Literal["ours", "reference"]

# arclib/messagers.py:203, with {description} = "" (an ARC task has no description), and :246.
REFERENCE_INSTRUCTION = (
    "Figure out the underlying transformation in the following examples and apply it to the test case. "
    "Here are some examples from this transformation, your answer must follow the format.\n"
)
REFERENCE_GRIDS_LINE = "The input-output grids are provided as python arrays:\n"
REFERENCE_IO_SEP = " -> "
REFERENCE_FOOTER = "#"


@dataclass(frozen=True)
class Prompt:
    """A prompt as messages: `system` ("" = none) and the `user` text; with no chat template, their concatenation."""

    user: str
    system: str = ""

    @property
    def key(self) -> str:
        """One string naming the prompt (the lm-eval prompts file and the predictor index it by this)."""
        return self.user if not self.system else f"{self.system}\x1e{self.user}"


def prompt_key(user: str, system: str = "") -> str:
    return Prompt(user, system).key


def render(tokenizer, prompt: Prompt, chat_template: bool) -> str:
    """The text the model reads: the chat template over [system?, user] with the generation prompt (as lm-eval's
    `apply_chat_template` renders the same document), or the plain concatenation."""
    if not chat_template:
        return prompt.system + prompt.user
    messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        {"role": "user", "content": prompt.user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# ------------------------------------------------------------------------------------------------ reference grids

def reference_grid_text(grid: Grid) -> str:
    """numpy's str of the grid: `[[1 2]\\n [3 0]]` (one digit per cell, so numpy pads nothing; a 30-wide row is
    61 characters, under numpy's 75, so rows never wrap, and a grid of at most 900 cells is never summarised)."""
    return "[" + "\n ".join("[" + " ".join(str(c) for c in row) + "]" for row in grid) + "]"


def reference_text_to_grid(text: object) -> Grid | None:
    """A predicted grid read as the reference reads it (eval-self-edits.py:305-306, representers.py:33-66); None
    when that fails or the result is not an ARC grid (cells 0-9, sides 1-30)."""
    if not isinstance(text, str):
        return None
    text = text.replace("#", "").replace("  ", " ").strip()
    try:
        cells = [int(x) for x in text.replace("[", "").replace("]", "").split()]
    except ValueError:
        return None
    rows = text.count("\n") + 1
    cols = len(cells) // rows
    if not cells or cols == 0 or rows * cols != len(cells) or rows > MAX_SIDE or cols > MAX_SIDE:
        return None
    if any(not 0 <= c <= 9 for c in cells):
        return None
    return tuple(tuple(cells[r * cols:(r + 1) * cols]) for r in range(rows))


def reference_self_edit_demonstrations(demos: Sequence[Pair]) -> str:
    """The demonstrations as the reference's self-edit prompt shows them (few-shot/self-edit.py:369-386)."""
    def rows(g: Grid) -> str:
        return "".join(" ".join(map(str, row)) + "\n" for row in g)

    return "".join("Input:\n" + rows(i) + "\nOutput:\n" + rows(o) + "\n" for i, o in demos)


# ------------------------------------------------------------------------------------------------ the two formats

@dataclass(frozen=True)
class PromptFormat:
    name: FormatName

    def grid_text(self, grid: Grid) -> str:
        return grid_to_text(grid) if self.name == "ours" else reference_grid_text(grid)

    def decode(self, text: object) -> Grid | None:
        return text_to_grid(text) if self.name == "ours" else reference_text_to_grid(text)

    def task_prompt(self, demos: Sequence[Pair], query_input: Grid) -> Prompt:
        """The in-context demonstrations and the query input; the model continues with `completion(output)`."""
        if self.name == "ours":
            return Prompt(format_task_prompt(demos, query_input))
        system = REFERENCE_INSTRUCTION + REFERENCE_GRIDS_LINE + "".join(
            reference_grid_text(i) + REFERENCE_IO_SEP + reference_grid_text(o) + REFERENCE_FOOTER + "\n"
            for i, o in demos)
        return Prompt(reference_grid_text(query_input) + REFERENCE_IO_SEP, system)

    def completion(self, output: Grid) -> str:
        """What the model is trained to write after the prompt (the trainer appends EOS)."""
        return grid_to_text(output) if self.name == "ours" else reference_grid_text(output) + REFERENCE_FOOTER

    def self_edit_demonstrations(self, demos: Sequence[Pair]) -> str:
        return format_demonstrations(demos) if self.name == "ours" else reference_self_edit_demonstrations(demos)

    @property
    def stop(self) -> tuple[str, ...]:
        """Where a prediction ends besides EOS: ours at the blank line before a next example (the lm-eval task's
        `until`); the reference at EOS only (vLLM's stop list is EOS and `<|eot_id|>`, inference/engine.py:8-23)."""
        return ("\n\n", "Input:") if self.name == "ours" else ()


OURS = PromptFormat("ours")
REFERENCE = PromptFormat("reference")


def format_of(spec) -> PromptFormat:
    return REFERENCE if spec.evaluation.prompt_format == "reference" else OURS
