"""The strict base every spec model derives from: unknown keys are errors, values are frozen.

`SpecPath` marks a string field that holds a file or folder path. The loader finds every such field in
the models (`loader.path_keys`) and rebases a relative value onto the folder of the spec file that set it,
so a path field added to any section is rebased without touching the loader.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict


class PathValue:
    """Annotated metadata: this string is a path, relative to the spec file that declares it.

    `or_name`: the value may instead be a name (e.g. a pip package); it is then a path only when it looks
    like one (has a path separator, or starts with `.` or `~`).
    """

    def __init__(self, or_name: bool = False):
        self.or_name = or_name

    def __repr__(self) -> str:
        return f"PathValue(or_name={self.or_name})"

    def applies_to(self, value: str) -> bool:
        return not self.or_name or "/" in value or "\\" in value or value.startswith((".", "~"))


SpecPath = Annotated[str, PathValue()]
SpecPathOrName = Annotated[str, PathValue(or_name=True)]


class SpecProblems(ValueError):
    """Several cross-field problems found by one model_validator, each at its own key path (dotted, relative
    to the model that raised it). The loader prints one `FILE: key.path: message` line per problem, FILE being
    the file that set that key."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{key}: {message}" if key else message for key, message in self.problems))


class Strict(BaseModel):
    # allow_inf_nan=False: YAML reads `.inf` and `.nan` as floats, and no stage can use either (an alpha of inf
    # makes every adapted logit NaN; a NaN passes no `gt`/`le` bound on its own).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


# Upper bounds on numbers, shared by several sections: what the stages can actually use. Each field states its
# own bound and the reason in its description; these are the ones more than one section needs.
MAX_SEED = 2**32 - 1  # numpy seeds are < 2**32, and the stages add offsets (< 2**31) to torch seeds (< 2**64)
MAX_TOKENS = 131_072  # the longest context of any model a spec may name (Llama 3.2 / Qwen2.5 with YaRN: 128K)
MAX_SAMPLES = 256  # self-edits per passage or task: each costs a generation and its inner-loop rounds (paper: 5-15)
MAX_REPEATS = 100  # inner-loop repeats per self-edit (paper: 3): each is a full adaptation
MAX_BATCH = 4096  # sequences per forward pass: no accelerator holds more of even the smallest model's activations
MAX_RESAMPLES = 20_000  # bootstrap resamples: the CI's Monte-Carlo error is ~1/sqrt(n), < 1% here, and the
#                         (resamples x passages-or-questions) index matrix must fit in memory (~160 MB at 1000)
MAX_PASSAGES = 100_000  # SQuAD v1.1 has ~21 000 paragraphs; the fictional generator is bounded in spec/data.py
MAX_LORA_RANK = 8192  # no supported model is wider (Qwen2.5-7B: 3584); a rank above a layer's width adds nothing


def unique_items(v: tuple, what: str = "listed twice", allow_empty: bool = True) -> tuple:
    """Field-validator body shared by every list-valued spec key whose entries must be distinct."""
    if not v and not allow_empty:
        raise ValueError("name at least one condition")
    dup = sorted({x for x in v if v.count(x) > 1})
    if dup:
        raise ValueError(f"{what}: {', '.join(dup)}")
    return v
