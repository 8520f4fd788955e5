"""The records every stage passes around: a passage, its questions, its teacher self-edits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()  # other accepted gold answers (SQuAD lists several)

    @property
    def golds(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    context: str
    questions: tuple[Question, ...]
    teacher_self_edits: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Passage:
        qs = tuple(Question(q["id"], q["question"], q["answer"], tuple(q.get("aliases", ()))) for q in d["questions"])
        return cls(d["id"], d["title"], d["context"], qs, tuple(d.get("teacher_self_edits", ())))
