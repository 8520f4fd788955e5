"""Which language model a run adapts: the embedded default, a Hugging Face id, or a local folder."""

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from seal_repro.spec.base import SpecPath, Strict


class ModelSpec(Strict):
    source: Literal["embedded", "hf", "local"] = "embedded"
    id: str | None = Field(None, description="Hugging Face model id (source: hf); must already be in the local HF cache")
    path: SpecPath | None = Field(None, description="folder with config.json + weights (source: local); relative to the spec file")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    lora_dtype: Literal["float32", "bfloat16", "float16", "model"] = Field(
        "float32",
        description="dtype of every LoRA's factors (and so of their AdamW states): float32 by default, also on "
        "bfloat16 weights, as PEFT's autocast_adapter_dtype does. Why: an AdamW step moves each element by about "
        "lr, and bfloat16 keeps 8 significant bits, so a step below ~0.4% of an element's value rounds away "
        "entirely — at the policy SFT's lr (5e-5 to 3e-4) and at the end of a decaying schedule, a large share "
        "of the steps; float32 factors cost little (a LoRA is < 1% of the weights). model: the "
        "weights' own dtype")
    tf32: bool = Field(
        True,
        description="on a CUDA GPU, let float32 matmuls run on TF32 tensor cores (float32 range and accumulation, "
        "10-bit mantissa inputs): a float32 model, and the float32 LoRA factors and master weights of bfloat16 "
        "training; set where the model loads (seal_repro/models.py). No effect on a CPU")
    trust_remote_code: bool = Field(
        False, description="let transformers run the Python code a model folder or hub repo ships (its own model "
        "class); off unless a spec turns it on, since that code runs with the user's rights")
    # Required on purpose: whether prompts go through the tokenizer's chat template changes
    # every number, so a spec must say it out loud.
    chat_template: bool
    num_params: PositiveInt | None = Field(
        None, le=10**13, description="parameter count for `plan`, when the model is not known (at most 1e13: "
        "no model that large could be loaded)")

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "hf" and not self.id:
            raise ValueError("model.source is 'hf' but model.id is not set")
        if self.source == "local" and not self.path:
            raise ValueError("model.source is 'local' but model.path is not set")
        if self.source == "embedded" and (self.id or self.path):
            raise ValueError("model.source is 'embedded' but model.id/model.path is set; use source: hf or local")
        if self.source != "hf" and self.id:
            raise ValueError(f"model.id is only read when model.source is 'hf' (it is {self.source!r})")
        if self.source != "local" and self.path:
            raise ValueError(f"model.path is only read when model.source is 'local' (it is {self.source!r})")
        return self

    @property
    def name(self) -> str:
        return {"embedded": "SmolLM2-135M-Instruct (embedded)", "hf": self.id, "local": self.path}[self.source]
