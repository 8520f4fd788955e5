"""Who writes a knowledge run's self-edits: the adapted model itself (SEAL as in the paper), or a separate writer
(`self_edit.writer`, teacher–student SEAL).

With a writer, the two roles split: the writer (its base model, plus the ReST-EM policy adapter of the iteration)
samples every self-edit and is the model the policy SFT trains; the student (`model:`) is the model every inner-loop
round adapts, always from its own base weights, and whose adapted accuracy is the reward. Self-edits pass between
them as text, so the two may have different tokenizers, widths or families.

Without one, the writer *is* the student: the policy that writes a self-edit is also merged into the model the
inner loop adapts (the reference's TTT server adapts the RL checkpoint), and every key, seed and file stays what it
was before writers existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seal_repro.models import writer_dir
from seal_repro.policy import load_policy, policy_fingerprint

@dataclass(frozen=True)
class Writer:
    spec: object  # the experiment spec as the writer sees it: `.model` is the writer's model section
    model_dir: Path  # the writer's prepared model folder
    separate: bool  # False: the adapted model writes its own self-edits

    @classmethod
    def of(cls, spec, model_dir: Path) -> Writer:
        writer = spec.self_edit.writer
        if writer is None:
            return cls(spec, Path(model_dir), False)
        return cls(spec.model_copy(update={"model": writer}), writer_dir(model_dir), True)

    @property
    def name(self) -> str:
        return self.spec.model.name

    def fingerprint(self, policy: Path | None) -> str:
        """The writer model with `policy` (memo keys of its samples and of its policy SFT)."""
        return policy_fingerprint(self.model_dir, policy)

    def load(self, policy: Path | None):
        """(model, tokenizer): the writer's base with `policy` merged in."""
        return load_policy(self.spec, self.model_dir, policy)

    def student_policy(self, policy: Path | None) -> Path | None:
        """The adapter merged into the model a round adapts when `policy` writes the self-edits: the policy itself
        when the adapted model is the writer, none (the student's own weights) when a separate writer wrote them."""
        return None if self.separate else policy
