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
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def unique_items(v: tuple, what: str = "listed twice", allow_empty: bool = True) -> tuple:
    """Field-validator body shared by every list-valued spec key whose entries must be distinct."""
    if not v and not allow_empty:
        raise ValueError("name at least one condition")
    dup = sorted({x for x in v if v.count(x) > 1})
    if dup:
        raise ValueError(f"{what}: {', '.join(dup)}")
    return v
