"""The few-shot ARC experiment (SEAL's second domain): one validated object every stage receives.

Defaults follow the paper's protocol (Llama-3.2-1B, LoRA rank 128 / alpha 16, 15 self-edits per
training task, 5 per evaluation task, 2 attempts) except the task selection, which defaults to a
few small-grid tasks so a CPU run stays short; the paper's spec names the ids file instead.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from seal_repro.spec.arc_self_edit import (
    MAX_EPOCHS,
    MAX_LEARNING_RATE,
    PLACEHOLDER,
    Augmentations,
    LossOn,
    SelfEdit,
    TrainingChoice,
)
from seal_repro.spec.base import (
    MAX_BATCH,
    MAX_RESAMPLES,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_TOKENS,
    SpecPath,
    SpecProblems,
    Strict,
    unique_items,
)
from seal_repro.spec.executor import ExecutorSpec, LocalExecutor
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.self_edit import HFBackend, SamplingBackend, SamplingSpec
from seal_repro.spec.training import Schedule, TrainingSpec, default

FewShotCondition = Literal["icl", "ttt_no_rl", "seal", "oracle_ttt"]
ALL_FEWSHOT_CONDITIONS: tuple[FewShotCondition, ...] = ("icl", "ttt_no_rl", "seal", "oracle_ttt")
_TASK_ID = re.compile(r"^[0-9a-f]{8}$")
ARC_SPLIT_TASKS = 400  # ARC-AGI-1 has 400 training and 400 evaluation tasks


class TaskSelectionSpec(Strict):
    """One role's tasks: explicit `ids`, the role's list in `ids_file`, or the first `n` by id (optionally small)."""

    split: Literal["train", "eval"]
    ids: tuple[str, ...] | None = Field(None, max_length=ARC_SPLIT_TASKS,
                                        description="ARC task ids, used in this order (a split has 400)")
    ids_file: SpecPath | None = Field(
        None,
        description='JSON {"train": [...], "eval": [...]} like the paper\'s filtered_task_ids.json (this role\'s list '
        "is used); relative to the spec file",
    )
    n: PositiveInt | None = Field(None, le=ARC_SPLIT_TASKS, description="the first n tasks of the split by id (after "
                                  f"max_cells; at most {ARC_SPLIT_TASKS}, the tasks in a split)")
    max_cells: PositiveInt | None = Field(
        None, le=900, description="with n: only tasks whose every grid has at most this many cells"
    )

    @field_validator("ids")
    @classmethod
    def _ids(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("name at least one task id")
        bad = [i for i in v if not _TASK_ID.match(i)]
        if bad:
            raise ValueError(f"not 8-hex-digit ARC task ids: {', '.join(bad)}")
        return unique_items(v)

    @model_validator(mode="after")
    def _one_way(self):
        given = [k for k in ("ids", "ids_file", "n") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of ids, ids_file, n (got {', '.join(given) or 'none'})")
        if self.max_cells is not None and self.n is None:
            raise ValueError("max_cells only filters a selection by n; explicit ids are used as given")
        return self


class FewShotTasksSpec(Strict):
    train: TaskSelectionSpec = TaskSelectionSpec(split="train", n=4, max_cells=36)
    eval: TaskSelectionSpec = TaskSelectionSpec(split="eval", n=4, max_cells=36)

    @model_validator(mode="after")
    def _disjoint(self):
        # Different ARC splits never share ids; within one split only explicit lists can be checked here
        # (ids_file lists are checked when loaded, by fewshot.tasks.load_task_sets).
        if self.train.split != self.eval.split:
            return self
        if self.train.n is not None or self.eval.n is not None:
            raise ValueError(
                f"tasks.train and tasks.eval both draw from split {self.train.split!r}, and selecting by n would "
                "pick overlapping tasks; give ids or ids_file for both"
            )
        if self.train.ids and self.eval.ids:
            both = sorted(set(self.train.ids) & set(self.eval.ids))
            if both:
                raise ValueError(f"tasks.train.ids and tasks.eval.ids overlap: {', '.join(both)}")
        return self


MAX_TRIES = 1000  # samples per self-edit under `resample`: each is a generation


class ResampleSpec(Strict):
    max_tries: PositiveInt = Field(
        description=f"samples per self-edit at most, the first included (at most {MAX_TRIES}). The reference samples "
        "until one parses, without limit (few-shot/self-edit.py:458-464), which never ends for a model that writes "
        "no valid JSON; a bound keeps a run finite, and a self-edit still invalid after it is a failed pair",
        le=MAX_TRIES)


class FewShotSelfEditSpec(Strict):
    template: str | None = Field(
        None, description=f"prompt asking for a self-edit; must contain {PLACEHOLDER}; null = built-in (which asks for "
        "json_format: ours)"
    )
    system: str | None = Field(
        None, max_length=100_000, description="system message before the self-edit prompt (needs model.chat_template); "
        "the reference's is 'You are a helpful assistant that provide the correct output for the given task "
        "immediately.' (few-shot/utils/prompts.py:43); null: no system message")
    json_format: Literal["ours", "reference"] = Field(
        "ours", description="the self-edit's JSON and how it is read: reference = the reference's keys "
        "(data_generation.use_{basic,size,chain,repeat}_augmentations, training.strategy/learning_rate/"
        "num_train_epochs), the whole output must be one JSON document, its defaults (a missing key: no training) "
        "and no range checks (seal_repro/fewshot/self_edit.py parse_reference_self_edit); ours = our keys, found "
        "anywhere in the output, strictly typed and bounded (learning rate <= 0.01, epochs 1-10), the run's defaults "
        "filling missing training keys: kept because a small model's output is rarely bare JSON, and a bounded "
        "choice never diverges or runs for thousands of steps")
    resample: ResampleSpec | None = Field(
        None, description="sample a self-edit again while it is invalid, up to max_tries samples (the reference: "
        "until it parses); null: an invalid self-edit is a failed pair at once, which measures how often the model "
        "writes a valid one")
    decoding: Literal["free", "json_schema"] = Field(
        "free", description="json_schema: generation constrained to the json_format's grammar (the outlines "
        "library), so every self-edit parses and is in range (bar truncation at max_new_tokens); free: the model's "
        "own choice of tokens, as the reference samples")
    learning_rates: tuple[float, ...] | None = Field(
        None, min_length=1, max_length=8, description="under decoding: json_schema with json_format: ours, the only "
        "learning rates a self-edit may write (each > 0 and <= 0.01, written as the decimals the template should list, "
        "e.g. [0.001, 0.003]): a discrete menu like the augmentation flags, so RL selects among a few settings instead "
        "of copying the prompt's example or its upper bound; null: any decimal 0 < lr <= 0.01")
    sampling: SamplingSpec = SamplingSpec()
    backend: SamplingBackend = Field(
        HFBackend(), description="what samples the self-edits: hf (generate in the stage's process, the default) or "
        "openai (an OpenAI-compatible completions server, e.g. vLLM serving the policy as a LoRA on a GPU node); part "
        "of the samples' memo key")
    n_train: PositiveInt = Field(15, le=MAX_SAMPLES, description=f"self-edits sampled per training task (RL; at most "
                                 f"{MAX_SAMPLES})")
    n_eval: PositiveInt = Field(5, le=MAX_SAMPLES, description=f"self-edits sampled per evaluation task (at most "
                                f"{MAX_SAMPLES})")

    @field_validator("template")
    @classmethod
    def _placeholder(cls, v):
        if v is not None and PLACEHOLDER not in v:
            raise ValueError(f"must contain the placeholder {PLACEHOLDER}")
        return v

    @field_validator("learning_rates")
    @classmethod
    def _menu(cls, v):
        if v is None:
            return v
        bad = [x for x in v if not 0 < x <= MAX_LEARNING_RATE]
        if bad:
            raise ValueError(f"{bad[0]:g} is outside 0 < learning rate <= {MAX_LEARNING_RATE:g}")
        if len(set(v)) != len(v):
            raise ValueError("lists a learning rate twice")
        return v

    @model_validator(mode="after")
    def _menu_is_a_grammar(self):
        if self.learning_rates is not None and (self.decoding != "json_schema" or self.json_format != "ours"):
            raise ValueError("self_edit.learning_rates restricts constrained decoding; it needs decoding: json_schema "
                             f"and json_format: ours (they are {self.decoding!r} and {self.json_format!r})")
        return self

    @model_validator(mode="after")
    def _constrained_needs_hf(self):
        if self.decoding == "json_schema" and self.backend.kind != "hf":
            raise ValueError("self_edit.decoding: json_schema constrains Hugging Face generate (outlines); it needs "
                             f"self_edit.backend.kind: hf (it is {self.backend.kind!r})")
        return self

    @model_validator(mode="after")
    def _greedy(self):
        if self.sampling.temperature == 0 and max(self.n_train, self.n_eval) > 1:
            raise ValueError(
                f"self_edit.sampling.temperature is 0 (greedy) but self_edit.n_train/n_eval ask for "
                f"{self.n_train}/{self.n_eval} samples, which would all be identical"
            )
        if self.sampling.temperature == 0 and self.resample is not None and self.resample.max_tries > 1:
            raise ValueError("self_edit.resample: greedy decoding (sampling.temperature 0) gives the same invalid "
                             "self-edit every time; set max_tries 1 or sample")
        return self

    @model_validator(mode="after")
    def _template_asks_for_the_format(self):
        if self.json_format == "reference" and self.template is None:
            raise ValueError("self_edit.json_format is 'reference' but self_edit.template is null: the built-in "
                             "prompt asks for our JSON; give the reference's prompt as template")
        return self


PAPER_ARC_LORA = LoraSpec(rank=128, alpha=16.0, target_modules=("q_proj", "v_proj", "gate_proj", "down_proj", "up_proj"))


class FewShotInnerLoopSpec(TrainingSpec):
    """Test-time training: the training settings (spec/training.py), where `lr`, `epochs` and `loss_on` are what a
    self-edit gets when it leaves its own choice out."""

    lora: LoraSpec = PAPER_ARC_LORA
    batch_size: PositiveInt = default("batch_size", 2)
    lr: float = default("lr", 1e-4)
    epochs: PositiveInt = default("epochs", 2)
    lr_schedule: Schedule = default("lr_schedule", "cosine")
    max_steps: PositiveInt | None = default("max_steps", 375)
    max_seq_len: PositiveInt = default("max_seq_len", 8192)
    max_examples: PositiveInt = Field(250, le=100_000, description="cap on test-time-training examples per adapter "
                                      "(after dedup; at most 100 000)")
    leave_two_out: bool = Field(True, description="also hold out a second demonstration (ours: when there are three "
                                "or more; augmentations reference: always, as the reference, so a 2-demonstration "
                                "task also trains on tasks with no demonstration)")
    loss_on: LossOn = Field("output_tokens", description="when a self-edit gives no loss_on")
    augmentations: Literal["ours", "reference"] = Field(
        "ours", description="what a self-edit's four flags switch on, and how the training tasks are built. "
        "reference = the reference's (few-shot/self-edit.py:144-366): basic = 3 rotations, 2 flips, 4 reflections, "
        "a random wrap-around shift, transpose; size = x2 upscale, height x2, width x2; chain = 6 symmetries then x2 "
        "upscale; repeat = 3 tilings; plus, on every task, one copy with colours permuted (0 fixed) and examples "
        "shuffled; the held-out example augmented with the rest; capped after the length filter. ours = the 7 "
        "symmetries, x2/x3 upscaling, symmetry+x2, demonstration reorderings, no colour changes (many ARC rules "
        "name colours): kept because every one of them can be undone on a prediction, so training and voting use "
        "one set")
    step_limit_rule: Literal["truncate", "skip"] = Field(
        "truncate", description="what a self-edit asking for more than max_steps optimizer steps gets: skip = the "
        "reference's gate (few-shot/self-edit.py:552-555): when epochs x examples // batch_size > max_steps, 0 epochs "
        "(an untrained adapter, still evaluated), else every step, even a few past max_steps; truncate = train and "
        "stop at max_steps: kept because it spends a bounded budget on every self-edit instead of none")

    @model_validator(mode="after")
    def _step_limit(self):
        if self.step_limit_rule == "skip" and self.max_steps is None:
            raise ValueError("inner_loop.step_limit_rule is 'skip' but inner_loop.max_steps is null: the gate needs "
                             "a limit (the reference's: 375)")
        return self

    @model_validator(mode="after")
    def _rules(self):
        problems = []
        if self.batch_size > self.max_examples:
            problems.append(("batch_size", f"({self.batch_size}) is larger than inner_loop.max_examples "
                                           f"({self.max_examples})"))
        if self.lr > MAX_LEARNING_RATE:
            problems.append(("lr", f"{self.lr:g} is above {MAX_LEARNING_RATE:g}, the most a self-edit may choose"))
        if self.epochs > MAX_EPOCHS:
            problems.append(("epochs", f"{self.epochs} is above {MAX_EPOCHS}, the most a self-edit may choose"))
        if problems:
            raise SpecProblems(problems)
        return self


# Assumption: the paper gives no numbers for its oracle; this is the TTT recipe of Akyürek et al.
# (every augmentation, loss on everything, 2 epochs at 5e-5). Set `oracle:` in a spec to change it.
DEFAULT_ORACLE = SelfEdit(
    augmentations=Augmentations(basic=True, size=True, chain=True, repeat=True),
    training=TrainingChoice(loss_on="all_tokens", learning_rate=5e-5, epochs=2),
)


class PolicySFTSpec(TrainingSpec):
    """Fine-tuning the self-edit policy on the kept self-edits (paper: rank 16, alpha 16, lr 5e-5, 8 epochs, batch 5);
    the loss is on the self-edit only, never on its prompt."""

    lora: LoraSpec = LoraSpec(rank=16, alpha=16.0)
    lr: float = default("lr", 5e-5)
    epochs: PositiveInt = default("epochs", 8)
    batch_size: PositiveInt = default("batch_size", 5)


class FewShotRLSpec(Strict):
    iterations: PositiveInt = Field(1, le=1000, description="ReST-EM rounds (the paper runs 1; at most 1000)")
    keep: Literal["solved"] = Field("solved", description="solved: every self-edit whose adapter solves its task")
    sft: PolicySFTSpec = PolicySFTSpec()
    ttt_on_policy: bool = Field(
        False, description="the SEAL condition's test-time training and prediction run on the base model with the "
        "RL policy merged in, as the reference's (its RL-trained model is the TTT and inference base, README.md:64-90, "
        "few-shot/self-edit.py:432,495-498); false: on the base model, so SEAL differs from ttt_no_rl only in who "
        "wrote the self-edits (the policy's effect on choosing, without its effect on solving)")


class FewShotEvaluationSpec(Strict):
    n_attempts: int = Field(2, ge=1, le=3, description="guesses per test output (ARC allows 2)")
    max_new_tokens: PositiveInt = Field(1024, le=MAX_TOKENS, description="enough for a 30x30 grid written as digits "
                                        f"(at most {MAX_TOKENS}, the longest context of a supported model)")
    vote_families: tuple[Literal["basic", "size", "chain", "repeat"], ...] = Field(
        ("basic",), description="voting ours: transforms whose back-mapped predictions vote, besides the identity; "
        "[] = identity only"
    )
    voting: Literal["ours", "reference"] = Field(
        "ours", description="reference = the reference's (inference/preprocess.py:16-68, arclib/voting.py): the "
        "demonstrations minus one in turn, each also in 2 shuffled orders, plus 5 of those transformed (transpose, "
        "2 flips, 2 rotations); a hierarchical vote over the back-mapped answers; ours = every demonstration in each "
        "of the vote_families' transforms, a plain majority: kept because it shows the model every demonstration, "
        "and the transforms are a spec choice")
    prompt_format: Literal["ours", "reference"] = Field(
        "ours", description="how grids and tasks become text, for training, prediction and the self-edit prompt "
        "alike (seal_repro/fewshot/formats.py; in this section because every stage that writes or reads prompts "
        "depends on it): reference = numpy-style grids '[[1 2]\\n [3 0]]', the demonstrations in a system message, "
        "'input -> ' in the user message, the answer ending '#' (needs model.chat_template); ours = rows of digits "
        "under 'Input:'/'Output:' in one message: kept because it is the shortest text for tokenizers that give "
        "each digit its own token, which a CPU run pays for")
    bootstrap_resamples: PositiveInt = Field(2000, le=MAX_RESAMPLES, description=f"at most {MAX_RESAMPLES}: the "
                                             "CI's Monte-Carlo error is ~1/sqrt(n)")
    batch_size: PositiveInt = Field(8, le=MAX_BATCH, description=f"prompts per generation batch (at most {MAX_BATCH})")

    @field_validator("vote_families")
    @classmethod
    def _unique_families(cls, v):
        return unique_items(v)

    @model_validator(mode="after")
    def _voting(self):
        # Compared with the default, not with what the file set: a resolved spec (every key written out) must load.
        if self.voting == "reference" and self.vote_families != type(self).model_fields["vote_families"].default:
            raise ValueError("evaluation.vote_families is only read when evaluation.voting is 'ours' (the "
                             "reference's transforms are fixed); leave it at its default")
        return self


class FewShotSpec(Strict):
    domain: Literal["fewshot"] = "fewshot"
    description: str = ""
    protocol: str | None = Field(None, description="the paper table/figure and version this spec reproduces")
    seed: NonNegativeInt = Field(0, le=MAX_SEED, description=f"at most {MAX_SEED} (2**32 - 1): numpy takes seeds below "
                                 "2**32, and the stages add offsets to it")
    model: ModelSpec
    tasks: FewShotTasksSpec = FewShotTasksSpec()
    self_edit: FewShotSelfEditSpec = FewShotSelfEditSpec()
    inner_loop: FewShotInnerLoopSpec = FewShotInnerLoopSpec()
    oracle: SelfEdit = Field(DEFAULT_ORACLE, description="the fixed hand-chosen self-edit of the oracle_ttt condition")
    rl: FewShotRLSpec = FewShotRLSpec()
    evaluation: FewShotEvaluationSpec = FewShotEvaluationSpec()
    conditions: tuple[FewShotCondition, ...] = ALL_FEWSHOT_CONDITIONS
    executor: ExecutorSpec = Field(LocalExecutor(), description="where TTT rounds run: the stage's process, forked "
                                   "copies of it side by side (CPU), or Ray workers; changes no result, left out of the "
                                   "hash")

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v):
        if not v:
            raise ValueError("name at least one condition")
        return unique_items(v)

    @model_validator(mode="after")
    def _messages_need_a_chat_template(self):
        problems = []
        if self.evaluation.prompt_format == "reference" and not self.model.chat_template:
            problems.append(("evaluation.prompt_format", "is 'reference', whose demonstrations sit in a system "
                             "message, but model.chat_template is false"))
        if self.self_edit.system is not None and not self.model.chat_template:
            problems.append(("self_edit.system", "a system message needs model.chat_template: true"))
        if problems:
            raise SpecProblems(problems)
        return self
