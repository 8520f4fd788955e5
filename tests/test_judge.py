"""The LLM judge against a misbehaving OpenAI-compatible server on 127.0.0.1."""

import logging

import pytest

from fake_openai import chat, no_proxy, server  # noqa: F401 (fixtures: the loopback server, no proxy)
from seal_repro.errors import UserError
from seal_repro.graders import GradeItem, GradeResult, grade
from seal_repro.graders.judge import JudgeClient, check_ungraded, parse_verdict, ungraded_rate
from seal_repro.spec.evaluation import JudgeGrader

KEY = "sk-planted-SECRET-0123456789"
ITEM = GradeItem("In what year did the Quorvel Bridge open?", ("1874",), "It opened in 1874.")


def client(server, *, max_retries=3, timeout_s=5.0, **kw):
    spec = JudgeGrader(base_url=server.url, model="judge-model", api_key_env="JUDGE_KEY", max_retries=max_retries,
                       timeout_s=timeout_s)
    sleeps = []
    c = JudgeClient(spec, backoff_base_s=0.01, env={"JUDGE_KEY": KEY}, sleep=sleeps.append, seed=0, **kw)
    return c, sleeps


def test_ok_reply_sends_model_prompt_and_key(server):
    server.script = [("ok", chat("Yes."))]
    c, sleeps = client(server)
    r = c.grade_one(ITEM)
    assert (r.correct, r.score, sleeps) == (True, 1.0, [])
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    assert req["body"]["model"] == "judge-model"
    prompt = req["body"]["messages"][-1]["content"]
    assert ITEM.question in prompt and "1874" in prompt and ITEM.prediction in prompt


def test_429_then_ok_honours_retry_after(server):
    server.script = [("err", 429, b"slow down", {"Retry-After": "7"}), ("ok", chat("no"))]
    c, sleeps = client(server)
    r = c.grade_one(ITEM)
    assert r.correct is False and "after 2 attempts" in r.detail
    assert len(server.requests) == 2 and sleeps == [7.0]


def test_persistent_500_becomes_ungraded_after_exponential_backoff(server):
    server.script = [("err", 500, b"boom", {})]
    c, sleeps = client(server, max_retries=4)
    r = c.grade_one(ITEM)
    assert r.correct is None and "HTTP 500" in r.detail and "after 5 attempts" in r.detail
    assert len(server.requests) == 5
    assert len(sleeps) == 4
    for i, s in enumerate(sleeps):  # base * 2**i, jittered into [50%, 100%]
        assert 0.01 * 2**i * 0.5 <= s <= 0.01 * 2**i


def test_timeouts_are_retried_then_ungraded(server):
    server.script = [("sleep", 0.6)]
    c, sleeps = client(server, max_retries=1, timeout_s=0.15)
    r = c.grade_one(ITEM)
    assert r.correct is None and "timed out" in r.detail.lower()
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_timeout_then_ok(server):
    server.script = [("sleep", 0.6), ("ok", chat("yes"))]
    c, _ = client(server, timeout_s=0.15)
    assert c.grade_one(ITEM).correct is True


def test_garbage_json_is_retried_and_recorded(server):
    server.script = [("ok", b"<html>not json{")]
    c, _ = client(server, max_retries=2)
    r = c.grade_one(ITEM)
    assert r.correct is None and "malformed reply" in r.detail and "not json" in r.detail
    assert len(server.requests) == 3
    server.script, server.requests = [("ok", b'{"choices": []}'), ("ok", chat("YES"))], []
    assert c.grade_one(ITEM).correct is True


def test_unparseable_verdict_is_ungraded_not_wrong_and_not_retried(server):
    server.script = [("ok", chat("Maybe, it depends."))]
    c, _ = client(server)
    r = c.grade_one(ITEM)
    assert r.correct is None and "Maybe" in r.detail
    assert len(server.requests) == 1


def test_client_errors_are_not_retried(server):
    server.script = [("err", 401, b'{"error": "bad key"}', {})]
    c, sleeps = client(server)
    r = c.grade_one(ITEM)
    assert r.correct is None and "HTTP 401" in r.detail and sleeps == []


def test_planted_key_never_leaks(server, caplog):
    def echo_auth_500(body, headers):
        return ("err", 500, f"invalid auth {headers['Authorization']}".encode(), {})

    def echo_auth_reply(body, headers):
        return ("ok", chat(f"maybe {headers['Authorization']}"))

    def echo_garbage(body, headers):
        return ("ok", f"garbage {headers['Authorization']}".encode())

    caplog.set_level(logging.DEBUG)
    c, _ = client(server, max_retries=1)
    results = []
    for action in (echo_auth_500, echo_auth_reply, echo_garbage):
        server.script = [action]
        results.append(c.grade_one(ITEM))
    assert all(r.correct is None for r in results)
    assert all("***" in r.detail for r in results)  # the echoed key was there, and was scrubbed
    assert not any(KEY in r.detail or KEY[:12] in r.detail for r in results)
    assert caplog.records and KEY not in caplog.text
    with pytest.raises(UserError) as err:
        check_ungraded(results, 0.0)
    assert KEY not in str(err.value)


def test_missing_key_env_and_bad_url_are_user_errors():
    with pytest.raises(UserError, match="'NO_SUCH_VAR'") as err:
        JudgeClient(JudgeGrader(base_url="http://127.0.0.1:1", model="m", api_key_env="NO_SUCH_VAR"), env={})
    assert len(err.value.lines) == 1
    with pytest.raises(UserError, match="http:// or https://"):
        JudgeClient(JudgeGrader(base_url="127.0.0.1:1", model="m"))


def test_connection_refused_becomes_ungraded():
    spec = JudgeGrader(base_url="http://127.0.0.1:9", model="m", max_retries=1)  # discard port: nothing listens
    r = JudgeClient(spec, backoff_base_s=0.0, sleep=lambda s: None).grade_one(ITEM)
    assert r.correct is None and "ungraded after 2 attempts" in r.detail


def test_grade_through_the_graders_api_keeps_order_under_concurrency(server):
    server.script = [lambda body, h: ("ok", chat("yes" if "right" in body["messages"][-1]["content"] else "no"))]
    items = [GradeItem(f"q{i}?", ("x",), "right" if i % 3 else "wrong") for i in range(12)]
    spec = JudgeGrader(base_url=server.url, model="m")
    results = grade(spec, items)
    assert [r.correct for r in results] == [bool(i % 3) for i in range(12)]


@pytest.mark.parametrize(
    "text, verdict",
    [("Yes", True), ("no.", False), ("**Yes**", True), ("Answer: no", False), ("I think yes", True),
     ("Incorrect.", False), ("Correct", True), ("Is it yes or no? Hard to say", None), ("Not sure", None),
     ("maybe", None), ("", None), ("nobody knows", None)],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) is verdict


def test_ungraded_rate_and_check():
    results = [GradeResult(True, 1.0, ""), GradeResult(None, 0.0, "ungraded: HTTP 500"), GradeResult(False, 0.0, ""),
               GradeResult(True, 1.0, "")]
    assert ungraded_rate(results) == 0.25 and ungraded_rate([]) == 0.0
    check_ungraded(results, 0.25)  # at the threshold is fine
    with pytest.raises(UserError) as err:
        check_ungraded(results, 0.2)
    assert len(err.value.lines) == 1 and "1 of 4" in err.value.lines[0] and "HTTP 500" in err.value.lines[0]


# -- the judge's prompts and verdict rule are spec values (the paper spec quotes the reference's) -------------------
REF_USER = ("You are a grading assistant. Respond ONLY with 'yes' or 'no'.\n\nQuestion: {question}\n"
            "Gold answer: {gold}\nStudent answer: {pred}\nIs the student answer correct? Respond 'yes' or 'no'.")


def test_default_prompts_are_unchanged_and_sent_with_temperature_0(server):
    from seal_repro.graders.judge import SYSTEM_PROMPT, USER_PROMPT

    server.script = [("ok", chat("yes"))]
    c, _ = client(server)
    assert c.spec.system_prompt == SYSTEM_PROMPT and c.spec.user_prompt == USER_PROMPT
    c.grade_one(ITEM)
    body = server.requests[0]["body"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"] and body["temperature"] == 0
    assert body["messages"][1]["content"] == USER_PROMPT.format(question=ITEM.question, golds="1874",
                                                                prediction="It opened in 1874.")


def test_reference_style_judge_sends_one_user_message_no_temperature(server):
    server.script = [("ok", chat("Yes, it says 1874."))]
    spec = JudgeGrader(base_url=server.url, model="m", system_prompt=None, user_prompt=REF_USER, temperature=None,
                       verdict="yes_without_no")
    item = GradeItem("In what year did the bridge open?", ("1874", "in 1874"), "  1874 \n")
    assert JudgeClient(spec).grade_one(item).correct is True
    body = server.requests[0]["body"]
    assert "temperature" not in body and [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"].endswith(
        "Question: In what year did the bridge open?\nGold answer: 1874\nStudent answer: 1874\n"
        "Is the student answer correct? Respond 'yes' or 'no'.")


@pytest.mark.parametrize("text, verdict", [("Yes", True), ("yes.", True), ("YES", True), ("no", False),
                                           ("Yes, no doubt", False), ("Not sure", False), ("", False),
                                           ("yesterday", False), ("The answer is yes", True)])
def test_yes_without_no_is_the_references_reading(text, verdict):
    from seal_repro.graders.judge import parse_yes_without_no

    assert parse_yes_without_no(text) is verdict


def test_yes_without_no_never_leaves_an_answer_ungraded(server):
    server.script = [("ok", chat("Maybe, it depends."))]
    spec = JudgeGrader(base_url=server.url, model="m", verdict="yes_without_no")
    assert JudgeClient(spec).grade_one(ITEM).correct is False  # first_word would leave it ungraded


def test_empty_answer_wrong_asks_nobody(server):
    server.script = [("ok", chat("yes"))]
    empty = GradeItem("q?", ("x",), "  \n")
    spec = JudgeGrader(base_url=server.url, model="m", empty_answer="wrong")
    r = JudgeClient(spec).grade_one(empty)
    assert (r.correct, server.requests) == (False, [])
    assert JudgeClient(spec.model_copy(update={"empty_answer": "ask"})).grade_one(empty).correct is True
    assert "(empty)" in server.requests[0]["body"]["messages"][-1]["content"]


def test_a_title_placeholder_needs_titled_answers():
    spec = JudgeGrader(base_url="http://127.0.0.1:9", model="m", user_prompt="Topic: {title}\n" + REF_USER)
    with pytest.raises(UserError, match=r"shows \{title\}"):
        JudgeClient(spec).grade([ITEM])  # before any request (nothing listens on port 9)


@pytest.mark.parametrize("prompt, message", [
    ("Q: {question} A: {prediction}", r"\{golds\} or \{gold\}"),
    ("Q: {question} gold {gold}", r"\{prediction\} or \{pred\}"),
    ("Q: {question} {gold} {pred} {context}", r"unknown placeholder\(s\) \{context\}"),
    ("Q: {question {gold} {pred}", "is not a format template"),
])
def test_user_prompt_placeholders_are_checked(prompt, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        JudgeGrader(base_url="http://x", model="m", user_prompt=prompt)
