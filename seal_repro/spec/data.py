"""Where passages and their questions come from."""

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from seal_repro.spec.base import SpecPath, Strict

DataKind = Literal["fictional", "seal_json", "squad_json", "hf_squad"]


class DataSpec(Strict):
    kind: DataKind = "fictional"
    path: SpecPath | None = Field(None, description="data file or folder (relative to the spec file); not for fictional")
    split: str = Field("validation", description="split name for hf_squad (a saved `datasets` folder)")
    n_passages: PositiveInt | None = Field(None, description="use the first n passages (after offset); null = all")
    offset: NonNegativeInt = 0
    questions_per_passage: PositiveInt = Field(5, description="fictional only: questions generated per passage")
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
        return self
