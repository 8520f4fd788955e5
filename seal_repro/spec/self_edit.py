"""How the model writes its self-edits: prompt format and sampling."""

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from seal_repro.spec.base import MAX_SAMPLES, MAX_TOKENS, Strict

PromptFormat = Literal["implications", "implications-long", "implications-very-long", "rewrite", "self-qa", "custom"]


class SamplingSpec(Strict):
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: PositiveInt = Field(
        256, le=MAX_TOKENS, description=f"self-edit length cap in tokens (at most {MAX_TOKENS}, the longest context "
        "of a supported model)")


class SelfEditSpec(Strict):
    prompt: PromptFormat = "implications"
    template: str | None = Field(None, description="prompt text for prompt: custom; must contain {passage}, may contain {title}")
    n: PositiveInt = Field(1, le=MAX_SAMPLES, description=f"self-edits sampled per passage (at most {MAX_SAMPLES}: "
                           "each is a generation and its inner-loop rounds)")
    chat_template: bool | None = Field(
        None, description="wrap the self-edit prompt in the chat template; null = model.chat_template"
    )
    sampling: SamplingSpec = SamplingSpec()

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
