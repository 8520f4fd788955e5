"""An LLM judge over any OpenAI-compatible `/chat/completions` endpoint.

The judge says yes/no to "is this answer correct given the gold?". Anything that stops it from
deciding (network trouble after retries, a reply it cannot parse, an HTTP error) leaves the answer
*ungraded* (`correct=None`) with the reason in `detail`; it is never counted as wrong. The API key is
read from the environment variable the spec names and is scrubbed from every string this module
returns, raises or logs.

We use stdlib `urllib` rather than an SDK: the judge makes one POST per answer, and the SDK would be an
extra dependency for users who never use a judge.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from seal_repro.errors import UserError
from seal_repro.graders.types import GradeItem, GradeResult
from seal_repro.spec.evaluation import DEFAULT_JUDGE_SYSTEM_PROMPT, DEFAULT_JUDGE_USER_PROMPT, JudgeGrader, format_fields

log = logging.getLogger(__name__)

# The default prompts (a spec's `evaluation.grader.system_prompt` / `user_prompt` replace them).
SYSTEM_PROMPT = DEFAULT_JUDGE_SYSTEM_PROMPT
USER_PROMPT = DEFAULT_JUDGE_USER_PROMPT

_FIRST_WORD = re.compile(r"^[\W_]*(yes|no|correct|incorrect)\b")
_ANY_YES_NO = re.compile(r"\b(yes|no)\b")
_YES = re.compile(r"\byes\b", re.IGNORECASE)
_NO = re.compile(r"\bno\b", re.IGNORECASE)
_RETRY_STATUS = {408, 409, 425, 429}
_DETAIL_CHARS = 200


def parse_verdict(text: str) -> bool | None:
    """'yes'/'no' (or 'correct'/'incorrect') leading the reply, else the only one of yes/no it mentions."""
    t = text.strip().lower()
    m = _FIRST_WORD.match(t)
    if m:
        return m.group(1) in ("yes", "correct")
    found = set(_ANY_YES_NO.findall(t))
    return (found == {"yes"}) if len(found) == 1 else None


def parse_yes_without_no(text: str) -> bool:
    """The reference's reading (`verdict: yes_without_no`): correct iff the reply names "yes" and not "no" as whole
    words, case-insensitive; anything else (both, neither) is wrong, never ungraded."""
    return bool(_YES.search(text)) and not _NO.search(text)


VERDICTS: dict[str, Callable[[str], bool | None]] = {"first_word": parse_verdict, "yes_without_no": parse_yes_without_no}


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Final(Exception):
    """A failure retrying will not fix (bad request, auth, unparseable verdict)."""


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class JudgeClient:
    """Grades answers through one OpenAI-compatible endpoint, as `JudgeGrader` describes it."""

    def __init__(
        self,
        spec: JudgeGrader,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        workers: int = 4,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ):
        env = os.environ if env is None else env
        self.spec = spec
        self._key = None
        if spec.api_key_env:
            self._key = env.get(spec.api_key_env)
            if not self._key:
                raise UserError(f"evaluation.grader.api_key_env names {spec.api_key_env!r}, which is not set or empty")
        if not spec.base_url.startswith(("http://", "https://")):
            raise UserError(f"evaluation.grader.base_url must start with http:// or https:// (got {spec.base_url!r})")
        self._url = spec.base_url.rstrip("/") + "/chat/completions"
        self._backoff_base_s, self._backoff_max_s = backoff_base_s, backoff_max_s
        self._workers = max(1, workers)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._opener = urllib.request.build_opener()  # reads proxy settings from the environment now
        self._needs_title = "title" in format_fields(spec.user_prompt) or "title" in format_fields(spec.question_format)

    def scrub(self, text: str) -> str:
        """Remove the API key from any text that may leave this object."""
        return text.replace(self._key, "***") if self._key else text

    def grade(self, items: Sequence[GradeItem]) -> list[GradeResult]:
        for it in items:  # before any request: a prompt that cannot be filled is the spec's problem, not the judge's
            self._title(it)
        if self._workers == 1 or len(items) <= 1:
            return [self.grade_one(it) for it in items]
        with ThreadPoolExecutor(self._workers) as pool:
            return list(pool.map(self.grade_one, items))

    def grade_one(self, item: GradeItem) -> GradeResult:
        if self.spec.empty_answer == "wrong" and not item.prediction.strip():
            return GradeResult(False, 0.0, "empty answer: wrong without asking the judge (empty_answer: wrong)")
        attempts = self.spec.max_retries + 1
        reason = ""
        for attempt in range(attempts):
            try:
                verdict, reply = self._ask(item)
            except _Final as err:
                return GradeResult(None, 0.0, self.scrub(f"ungraded: {err}"))
            except _Retryable as err:
                reason = err.reason
                if attempt + 1 < attempts:
                    delay = self._delay(attempt, err.retry_after)
                    log.warning(self.scrub(f"judge: {reason}; retry {attempt + 1}/{attempts - 1} in {delay:.2f}s"))
                    self._sleep(delay)
                continue
            note = f" (after {attempt + 1} attempts)" if attempt else ""
            return GradeResult(verdict, float(verdict), self.scrub(f"judge: {reply!r}{note}"))
        return GradeResult(None, 0.0, self.scrub(f"ungraded after {attempts} attempts: {reason}"))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        # Exponential backoff with jitter so parallel workers do not retry in lock-step.
        delay = min(self._backoff_max_s, self._backoff_base_s * 2**attempt) * (0.5 + self._rng.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max_s))
        return delay

    def _title(self, item: GradeItem) -> str:
        title = getattr(item, "title", None)
        if self._needs_title and not isinstance(title, str):
            raise UserError("evaluation.grader's prompt shows {title}, but the answers to grade carry no passage "
                            f"title (question {item.question!r})")
        return title or ""

    def prompt(self, item: GradeItem) -> str:
        """The user message for one answer (the spec's `user_prompt`, filled in)."""
        prediction = item.prediction.strip() or "(empty)"
        title = self._title(item)
        question = self.spec.question_format.replace("{title}", title).replace("{question}", item.question)
        return self.spec.user_prompt.format(
            question=question, title=title, golds=" | ".join(item.golds),
            gold=item.golds[0] if item.golds else "", prediction=prediction, pred=prediction,
        )

    def _ask(self, item: GradeItem) -> tuple[bool, str]:
        messages = [{"role": "user", "content": self.prompt(item)}]
        if self.spec.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.spec.system_prompt})
        body = {"model": self.spec.model, "messages": messages}
        if self.spec.temperature is not None:
            body["temperature"] = self.spec.temperature
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self._url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.spec.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            # Scrub before truncating so no partial key survives the cut.
            try:
                body_text = self.scrub(err.read(4096).decode("utf-8", "replace")) if err.fp else ""
            except (OSError, http.client.HTTPException):
                body_text = ""
            reason = f"HTTP {err.code} {body_text[:_DETAIL_CHARS]!r}"
            if err.code in _RETRY_STATUS or err.code >= 500:
                raise _Retryable(reason, _retry_after_s(err.headers.get("Retry-After"))) from None
            raise _Final(reason) from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None
        content = _reply_text(self.scrub(raw.decode("utf-8", "replace")))
        verdict = VERDICTS[self.spec.verdict](content)
        if verdict is None:
            raise _Final(f"unparseable verdict {content[:_DETAIL_CHARS]!r}")
        return verdict, content.strip()[:_DETAIL_CHARS]


def _reply_text(raw: str) -> str:
    """The assistant text of a chat completion; a malformed reply is worth a retry (often a proxy hiccup)."""
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retryable(f"malformed reply {raw[:_DETAIL_CHARS]!r}") from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise _Retryable(f"malformed reply: message.content is {type(content).__name__}")
    return content


def grade_judge(spec: JudgeGrader, items: Sequence[GradeItem]) -> list[GradeResult]:
    """The `grade` entry for `kind: judge`: one client for the whole batch."""
    return JudgeClient(spec).grade(items)


def ungraded_rate(results: Sequence[GradeResult]) -> float:
    return sum(r.correct is None for r in results) / len(results) if results else 0.0


def check_ungraded(results: Sequence[GradeResult], max_rate: float) -> None:
    """Fail the stage when the judge left too many answers ungraded for the accuracy to mean much."""
    rate = ungraded_rate(results)
    if rate > max_rate:
        n = sum(r.correct is None for r in results)
        first = next(r.detail for r in results if r.correct is None)
        raise UserError(
            f"the judge left {n} of {len(results)} answers ungraded ({rate:.1%} > evaluation.grader.max_ungraded_rate "
            f"{max_rate:.1%}); first reason: {first}"
        )
