"""Where passages and their questions come from."""

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from seal_repro.spec.base import MAX_PASSAGES, SpecPath, Strict

DataKind = Literal["fictional", "seal_json", "squad_json", "hf_squad"]

# The fictional generator's limits (seal_repro/data/fictional.py): its passages' names are drawn without repeats from
# a finite pool, which runs dry (and the generator loops) somewhere past ~50 000 passages; and every passage states
# at least this many facts to ask about (MAX_QUESTIONS there; a test checks the two agree).
FICTIONAL_MAX_PASSAGES = 10_000  # offset + n_passages
FICTIONAL_MAX_QUESTIONS = 7


class DataSpec(Strict):
    kind: DataKind = "fictional"
    path: SpecPath | None = Field(None, description="data file or folder (relative to the spec file); not for fictional")
    split: str = Field("validation", description="split name for hf_squad (a saved `datasets` folder)")
    n_passages: PositiveInt | None = Field(
        None, le=MAX_PASSAGES, description=f"use the first n passages (after offset); null = all (at most "
        f"{MAX_PASSAGES:,}; fictional: offset + n_passages at most {FICTIONAL_MAX_PASSAGES:,})")
    offset: NonNegativeInt = Field(0, le=MAX_PASSAGES, description="passages skipped before the first one used")
    questions_per_passage: PositiveInt = Field(
        5, le=FICTIONAL_MAX_QUESTIONS, description="fictional only: questions generated per passage (5 to "
        f"{FICTIONAL_MAX_QUESTIONS}: every generated passage states at least {FICTIONAL_MAX_QUESTIONS} facts)")
    teacher_path: SpecPath | None = Field(
        None, description="SEAL-format file whose `completions` are the teacher's self-edits (e.g. GPT-4.1's)"
    )

    @model_validator(mode="after")
    def _path_rules(self):
        if self.kind == "fictional" and self.path:
            raise ValueError("data.path is set but data.kind is 'fictional', which generates its passages")
        if self.kind != "fictional" and not self.path:
            raise ValueError(f"data.kind is {self.kind!r} but data.path is not set")
        if self.kind == "fictional" and self.questions_per_passage < 5:
            raise ValueError("data.questions_per_passage must be >= 5 for fictional passages")
        if self.kind == "fictional" and self.offset + (self.n_passages or 8) > FICTIONAL_MAX_PASSAGES:
            raise ValueError(f"data.offset + data.n_passages is {self.offset + (self.n_passages or 8)}, more than the "
                             f"{FICTIONAL_MAX_PASSAGES} fictional passages the generator makes with distinct names")
        return self
