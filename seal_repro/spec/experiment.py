"""The whole experiment: one validated object that every stage receives."""

from typing import Literal

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from seal_repro.spec.base import MAX_SEED, SpecProblems, Strict, unique_items
from seal_repro.spec.continual import ContinualSpec
from seal_repro.spec.cpt import CPTSpec
from seal_repro.spec.data import DataSpec
from seal_repro.spec.evaluation import EvaluationSpec
from seal_repro.spec.executor import ExecutorSpec, LocalExecutor
from seal_repro.spec.inner_loop import InnerLoopSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.rl import RLSpec, overlap_problem
from seal_repro.spec.self_edit import SelfEditSpec

Condition = Literal["base", "passage", "base_synthetic", "teacher_synthetic"]
ALL_CONDITIONS: tuple[Condition, ...] = ("base", "passage", "base_synthetic", "teacher_synthetic")


class ExperimentSpec(Strict):
    domain: Literal["knowledge"] = "knowledge"
    description: str = ""
    protocol: str | None = Field(None, description="the paper table/figure and version this spec reproduces")
    seed: NonNegativeInt = Field(0, le=MAX_SEED, description=f"at most {MAX_SEED} (2**32 - 1): numpy takes seeds below "
                                 "2**32, and the stages add offsets to it")
    model: ModelSpec
    data: DataSpec = DataSpec()
    self_edit: SelfEditSpec = SelfEditSpec()
    inner_loop: InnerLoopSpec = InnerLoopSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    conditions: tuple[Condition, ...] = ALL_CONDITIONS
    # Optional sections: each adds its own stages' results to the report when present.
    rl: RLSpec | None = Field(None, description="SEAL's ReST-EM outer loop; adds the SEAL row")
    cpt: CPTSpec | None = Field(None, description="continued pretraining on many passages at once (paper Table 2, n = 200)")
    continual: ContinualSpec | None = Field(None, description="sequential self-edits into one model (forgetting)")
    executor: ExecutorSpec = Field(LocalExecutor(), description="where inner-loop rounds run (local or Ray); "
                                   "changes no result, so it is left out of the spec hash")

    @field_validator("conditions")
    @classmethod
    def _unique(cls, v):
        return unique_items(v, allow_empty=False)

    @model_validator(mode="after")
    def _sections_agree(self):
        problems: list[tuple[str, str]] = []  # (key path, message): one error line each
        if self.rl is not None:
            overlap = overlap_problem(self.rl.train_data, self.data)
            if overlap:
                problems.append(("rl.train_data", overlap))
            if self.self_edit.sampling.temperature == 0 and self.rl.k > 1:
                problems.append(("rl.k", f"asks for {self.rl.k} self-edits per passage but "
                                 "self_edit.sampling.temperature is 0 (greedy), so they would all be identical"))
        if self.cpt is not None and "seal" in self.cpt.conditions and self.rl is None:
            problems.append(("cpt.conditions", "lists 'seal' but the spec has no rl section to train the SEAL policy"))
        n_eval = self.data.n_passages or (8 if self.data.kind == "fictional" else None)
        if self.continual is not None:
            if self.continual.start == "seal" and self.rl is None:
                problems.append(("continual.start", "is 'seal' but the spec has no rl section to train the SEAL "
                                 "policy"))
            if n_eval is not None and self.continual.n_passages > n_eval:
                problems.append(("continual.n_passages", f"{self.continual.n_passages} is more than the {n_eval} "
                                 "evaluation passages it draws from"))
        if self.cpt is not None and self.cpt.n_passages is not None:
            if n_eval is not None and self.cpt.n_passages > n_eval:
                problems.append(("cpt.n_passages", f"{self.cpt.n_passages} is more than the {n_eval} evaluation "
                                 "passages"))
        if self.self_edit.writer is not None:
            if self.cpt is not None and "seal" in self.cpt.conditions and self.cpt.seal_model == "policy":
                problems.append(("cpt.seal_model", "is 'policy', but with self_edit.writer the SEAL policy is the "
                                 "writer's and is never merged into the student; use seal_model: base"))
            if self.continual is not None:
                problems.append(("continual", "needs the adapted model to write its own next self-edit; with "
                                 "self_edit.writer set, drop the continual section (not supported yet)"))
        if problems:
            raise SpecProblems(problems)
        return self
