"""How the model writes its self-edits: prompt format, sampling, and the backend that samples."""

import re
from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from seal_repro.spec.base import MAX_SAMPLES, MAX_TOKENS, Strict
from seal_repro.spec.model import ModelSpec

PromptFormat = Literal["implications", "implications-long", "implications-very-long", "rewrite", "self-qa", "custom"]


class SamplingSpec(Strict):
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: PositiveInt = Field(
        256, le=MAX_TOKENS, description=f"self-edit length cap in tokens (at most {MAX_TOKENS}, the longest context "
        "of a supported model)")


# -- the sampling backend ------------------------------------------------------------------------------------------
SERVE_PRESETS = ("vllm",)  # `serve.command: vllm`: seal_repro/sampling.py VLLM_COMMAND
# What a serve command may name: filled in by seal_repro/sampling.py when it starts the server.
SERVE_FIELDS = ("model", "host", "port", "served_model_name", "dtype", "seed", "lora_args", "max_model_len")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HFBackend(Strict):
    """Self-edits from Hugging Face `generate` in the stage's process (the default; the only choice without a GPU):
    fixed batches of evaluation.batch_size prompts, each waiting for its longest sample."""

    kind: Literal["hf"] = "hf"


class ServeSpec(Strict):
    """How a stage starts (and stops) its own completions server for one sampling phase."""

    command: Literal["vllm"] | tuple[str, ...] = Field(
        "vllm", description="the server's argv, or `vllm` (the preset: `vllm serve` with the policy as a LoRA, "
        "seal_repro/sampling.py VLLM_COMMAND). Placeholders: {model} (the base model: a folder or a Hugging Face id), "
        "{host}, {port}, {served_model_name}, {dtype}, {seed}, {max_model_len}; an argument that is exactly "
        "{lora_args} becomes `--enable-lora --max-lora-rank R --lora-modules policy=DIR` when a policy adapter is "
        "served, nothing otherwise")
    host: str = Field("127.0.0.1", description="the address the server listens on and the client calls")
    port: int | None = Field(None, ge=1, le=65535, description="null: a free port picked when the server starts")
    startup_timeout_s: float = Field(
        1800.0, gt=0, le=24 * 3600, description="seconds to wait for GET /v1/models to answer before giving up (a 7B "
        "model loads and compiles in minutes)")
    max_model_len: PositiveInt | None = Field(
        None, le=MAX_TOKENS, description="the server's context length ({max_model_len}); null: the longest prompt the "
        "phase sends plus sampling.max_new_tokens, rounded up to 1024")

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, v):
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, tuple):
            if not v or not all(isinstance(a, str) and a for a in v):
                raise ValueError("must be a non-empty list of non-empty strings (the server's argv), or 'vllm'")
            unknown = sorted({f for a in v for f in re.findall(r"{(\w*)}", a)} - set(SERVE_FIELDS))
            if unknown:
                raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} (known: "
                                 f"{', '.join('{' + f + '}' for f in SERVE_FIELDS)})")
        return v


class OpenAIBackend(Strict):
    """Self-edits from an OpenAI-compatible `/v1/completions` server (vLLM on a GPU node): every prompt its own
    seeded request, sent concurrently (continuous batching: no sample waits for another's end), retried on 429/5xx;
    the policy is served as a LoRA adapter. `base_url` null: the stage starts the server (`serve`) for each
    sampling phase and stops it after; set: a running server (which must see the adapter folders at the same paths)."""

    kind: Literal["openai"] = "openai"
    base_url: str | None = Field(None, description="e.g. http://gpu-node:8000/v1; null: start a server (serve)")
    model: str | None = Field(None, description="the base model's name on a running server (base_url); null: the "
                              "first model GET /v1/models lists")
    serve: ServeSpec = Field(ServeSpec(), description="the server a stage starts when base_url is null, e.g. "
                             "{command: vllm}")
    max_concurrency: PositiveInt = Field(256, le=4096, description="requests in flight at once")
    max_retries: int = Field(5, ge=0, le=50, description="tries after the first on 408/429/5xx and broken connections")
    timeout_s: float = Field(3600.0, gt=0, le=24 * 3600, description="seconds per request (a long sample takes minutes)")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the server's key "
                                    "(never the key); null: none sent")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v):
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {v!r})")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v):
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), never the key itself")
        return v

    @model_validator(mode="after")
    def _one_server(self):
        # Compared with the default, not with what the file set: a resolved spec (every key written out) must load.
        if self.base_url is not None and self.serve != ServeSpec():
            raise ValueError("give base_url (a running server) or serve (a server the stage starts), not both")
        if self.base_url is None and self.model is not None:
            raise ValueError("model names a model on a running server: it is only read with base_url")
        return self


SamplingBackend = Annotated[Union[HFBackend, OpenAIBackend], Field(discriminator="kind")]


class SelfEditSpec(Strict):
    prompt: PromptFormat = "implications"
    template: str | None = Field(None, description="prompt text for prompt: custom; must contain {passage}, may contain {title}")
    n: PositiveInt = Field(1, le=MAX_SAMPLES, description=f"self-edits sampled per passage (at most {MAX_SAMPLES}: "
                           "each is a generation and its inner-loop rounds)")
    chat_template: bool | None = Field(
        None, description="wrap the self-edit prompt in the chat template; null = model.chat_template"
    )
    sampling: SamplingSpec = SamplingSpec()
    backend: SamplingBackend = Field(
        HFBackend(), description="what samples the self-edits: hf (generate in the stage's process, the default) or "
        "openai (an OpenAI-compatible completions server, e.g. vLLM on a GPU node); the samples differ (other "
        "numerics), so the backend is part of their memo key")
    writer: ModelSpec | None = Field(
        None, description="the model that writes the self-edits, a section like `model:` (teacher-student SEAL): "
        "ReST-EM trains this writer's policy, the inner loop adapts `model:` (the student) on what it writes, and "
        "rewards are the student's adapted accuracy; self-edits pass as text, so the tokenizers may differ. null "
        "(the default): the adapted model writes its own self-edits, as in the paper")

    @model_validator(mode="after")
    def _template_rules(self):
        if self.prompt == "custom":
            if not self.template:
                raise ValueError("self_edit.prompt is 'custom' but self_edit.template is not set")
            if "{passage}" not in self.template:
                raise ValueError("self_edit.template must contain the placeholder {passage}")
        elif self.template:
            raise ValueError(f"self_edit.template is only read when self_edit.prompt is 'custom' (it is {self.prompt!r})")
        return self
