"""Load passages for an experiment: generated fictional ones, or real SQuAD passages in three layouts.

Formats (`data.kind`):
- `seal_json`: the SEAL reference release, a JSON list of `{"title", "context", "questions", "completions",
  "prompt"}` whose questions are dicts or strings holding a Python dict literal (read with
  `ast.literal_eval`, never `eval`);
- `squad_json`: plain SQuAD v1.1, `{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`;
- `hf_squad`: the Hugging Face `squad` rows, from a `save_to_disk` folder or a .json/.jsonl/.parquet file.

Every file is validated in full before anything runs: all problems come back together in one
`DataError`, each line naming the file and the record (records are counted from 0, as JSON indexes
them). Passage ids hash title and context, so the same passage gets the same id in every format.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections import Counter
from pathlib import Path

from seal_repro.data.fictional import generate_passages
from seal_repro.data.records import Passage, Question
from seal_repro.errors import DataError
from seal_repro.spec.data import DataSpec

MAX_PROBLEM_LINES = 20
DEFAULT_FICTIONAL_PASSAGES = 8


def load_passages(spec: DataSpec, seed: int = 0, base_dir: str | Path | None = None) -> list[Passage]:
    """The passages `spec` selects, with teacher self-edits attached when `spec.teacher_path` is set.

    Relative paths are resolved against `base_dir` (the spec file's folder) when given.
    """
    if spec.kind == "fictional":
        n = spec.n_passages or DEFAULT_FICTIONAL_PASSAGES
        passages = generate_passages(spec.offset + n, spec.questions_per_passage, seed)[spec.offset :]
    else:
        path = _resolve(spec.path, base_dir)
        readers = {"seal_json": read_seal_json, "squad_json": read_squad_json, "hf_squad": read_hf_squad}
        passages = readers[spec.kind](path, split=spec.split)
        passages = _window(passages, spec, path)
    if spec.teacher_path:
        passages = attach_teacher(passages, _resolve(spec.teacher_path, base_dir))
    return passages


def passage_id(title: str, context: str) -> str:
    """Stable id from title + whitespace-normalised context."""
    digest = hashlib.sha1(f"{title}\n{_norm_ws(context)}".encode()).hexdigest()
    return f"p-{digest[:12]}"


# ---------------------------------------------------------------------------------------------- helpers


class _Problems:
    """Collects every problem in a file so the user fixes them in one pass, not one per run."""

    def __init__(self, path: Path | str):
        self.path, self.lines = str(path), []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise DataError(_capped(self.lines))


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_PROBLEM_LINES:
        return lines
    return [*lines[:MAX_PROBLEM_LINES], f"… and {len(lines) - MAX_PROBLEM_LINES} more problems"]


def _norm_ws(text: str) -> str:
    return " ".join(text.split())


def _resolve(path: str, base_dir: str | Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None


def _label(index_name: str, rec, title_key: str = "title", id_key: str | None = None) -> str:
    """`record 3 (title 'Normans')`: where a problem is, in words the user can search the file for."""
    extra = []
    if isinstance(rec, dict):
        if id_key and isinstance(rec.get(id_key), str):
            extra.append(f"id {rec[id_key]!r}")
        if isinstance(rec.get(title_key), str) and rec[title_key]:
            extra.append(f"title {rec[title_key]!r}")
    return f"{index_name} ({', '.join(extra)})" if extra else index_name


def _text(rec: dict, key: str, problems: _Problems, where: str, allow_empty: bool = False) -> str | None:
    """A required string field, or None after recording why it is unusable."""
    if key not in rec:
        problems.add(where, f"no {key!r}")
    elif not isinstance(rec[key], str):
        problems.add(where, f"{key!r} is {type(rec[key]).__name__}, not a string")
    elif not allow_empty and not rec[key].strip():
        problems.add(where, f"{key!r} is empty")
    else:
        return rec[key]
    return None


def _window(passages: list[Passage], spec: DataSpec, path: Path) -> list[Passage]:
    total, start = len(passages), spec.offset
    end = total if spec.n_passages is None else start + spec.n_passages
    if start >= total or end > total:
        raise DataError(
            f"{path}: data.offset={spec.offset} with data.n_passages={spec.n_passages} needs "
            f"{end if spec.n_passages else start + 1} passages, but the file has {total}"
        )
    return passages[start:end]


def _check_unique(passages: list[Passage], problems: _Problems) -> None:
    seen: dict[str, str] = {}
    for p in passages:
        if p.id in seen:
            problems.add("", f"passage {p.title!r} appears twice (same title and context)")
        seen[p.id] = p.title
    counts = Counter(q.id for p in passages for q in p.questions)
    for qid in sorted(q for q, n in counts.items() if n > 1):
        problems.add("", f"question id {qid!r} appears more than once")


# ---------------------------------------------------------------------------------------------- seal_json


def _seal_question(raw, problems: _Problems, where: str) -> tuple[str, str] | None:
    if isinstance(raw, str):
        try:
            raw = ast.literal_eval(raw)  # a Python dict literal; literal_eval runs no code
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            problems.add(where, f"not a dict literal: {raw[:60]!r}")
            return None
    if not isinstance(raw, dict):
        problems.add(where, f"expected a dict with 'question' and 'answer', got {type(raw).__name__}")
        return None
    q, a = _text(raw, "question", problems, where), _text(raw, "answer", problems, where)
    return (q, a) if q is not None and a is not None else None


def _read_seal(path: Path) -> list[tuple[Passage, list[str]]]:
    """Passages and their completions, validated."""
    data = _read_json(path)
    if not isinstance(data, list):
        squad_like = isinstance(data, dict) and "data" in data
        hint = " (this looks like SQuAD v1.1: use data.kind: squad_json)" if squad_like else ""
        raise DataError(
            f"{path}: expected a JSON list of {{'title', 'context', 'questions', ...}} records, "
            f"got a JSON {type(data).__name__}{hint}"
        )
    problems, out = _Problems(path), []
    for i, rec in enumerate(data):
        where = _label(f"record {i}", rec)
        if not isinstance(rec, dict):
            problems.add(where, f"expected an object, got {type(rec).__name__}")
            continue
        title = _text(rec, "title", problems, where, allow_empty=True)
        context = _text(rec, "context", problems, where)
        raw_qs = rec.get("questions")
        if not isinstance(raw_qs, list) or not raw_qs:
            problems.add(where, "no 'questions'" if raw_qs is None else "'questions' must be a non-empty list")
            raw_qs = []
        parsed = [_seal_question(q, problems, f"{where}: questions[{j}]") for j, q in enumerate(raw_qs)]
        completions = rec.get("completions", [])
        if not (isinstance(completions, list) and all(isinstance(c, str) for c in completions)):
            problems.add(where, "'completions' must be a list of strings")
            completions = []
        if title is None or context is None or not parsed or None in parsed:
            continue
        pid = passage_id(title, context)
        qs = tuple(Question(f"{pid}-q{j}", q, a) for j, (q, a) in enumerate(parsed))
        out.append((Passage(pid, title, context, qs), completions))
    _check_unique([p for p, _ in out], problems)
    problems.raise_if_any()
    return out


def read_seal_json(path: Path, split: str | None = None) -> list[Passage]:
    return [p for p, _ in _read_seal(Path(path))]


def attach_teacher(passages: list[Passage], teacher_path: Path) -> list[Passage]:
    """Give each passage the `completions` of the teacher record with the same context."""
    teacher: dict[str, list[str]] = {}
    for p, completions in _read_seal(Path(teacher_path)):
        teacher.setdefault(_norm_ws(p.context), completions)  # first wins; release files hold no duplicates
    problems, out = _Problems(teacher_path), []
    for p in passages:
        edits = teacher.get(_norm_ws(p.context))
        if edits is None:
            problems.add("", f"no teacher entry for passage {p.id} (title {p.title!r}); contexts must match")
        elif not [e for e in edits if e.strip()]:
            problems.add("", f"teacher entry for passage {p.id} (title {p.title!r}) has no non-empty completions")
        else:
            out.append(Passage(p.id, p.title, p.context, p.questions, tuple(e for e in edits if e.strip())))
    problems.raise_if_any()
    return out


# ---------------------------------------------------------------------------------------------- squad_json


def _answers(answers, problems: _Problems, where: str) -> tuple[str, tuple[str, ...]] | None:
    """Gold = the first answer text; other distinct texts become aliases."""
    if not isinstance(answers, list) or not answers:
        problems.add(where, "no answers" if not answers else "'answers' must be a list")
        return None
    texts = []
    for k, a in enumerate(answers):
        t = a.get("text") if isinstance(a, dict) else None
        if not isinstance(t, str) or not t.strip():
            problems.add(where, f"answers[{k}] has no 'text'")
            return None
        texts.append(t.strip())
    return texts[0], tuple(dict.fromkeys(t for t in texts[1:] if t != texts[0]))


def read_squad_json(path: Path, split: str | None = None) -> list[Passage]:
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        hint = " (a list of records looks like a SEAL release file: use data.kind: seal_json)"
        hint = hint if isinstance(data, list) else ""
        raise DataError(f"{path}: expected SQuAD v1.1 JSON, an object with a 'data' list of articles{hint}")
    problems, out = _Problems(path), []
    for i, art in enumerate(data["data"]):
        where = _label(f"data[{i}]", art)
        if not isinstance(art, dict):
            problems.add(where, f"expected an object, got {type(art).__name__}")
            continue
        title = _text(art, "title", problems, where, allow_empty=True)
        paras = art.get("paragraphs")
        if not isinstance(paras, list) or not paras:
            problems.add(where, "'paragraphs' must be a non-empty list")
            continue
        for j, para in enumerate(paras):
            pw = f"{where}: paragraphs[{j}]"
            if not isinstance(para, dict):
                problems.add(pw, f"expected an object, got {type(para).__name__}")
                continue
            context = _text(para, "context", problems, pw)
            qas = para.get("qas")
            if not isinstance(qas, list) or not qas:
                problems.add(pw, "'qas' must be a non-empty list")
                continue
            qs = []
            for k, qa in enumerate(qas):
                qw = f"{pw}: " + _label(f"qas[{k}]", qa, id_key="id")
                if not isinstance(qa, dict):
                    problems.add(qw, f"expected an object, got {type(qa).__name__}")
                    continue
                qid, question = _text(qa, "id", problems, qw), _text(qa, "question", problems, qw)
                golds = _answers(qa.get("answers"), problems, qw)
                if qid is not None and question is not None and golds is not None:
                    qs.append(Question(qid, question, golds[0], golds[1]))
            if title is not None and context is not None and len(qs) == len(qas):
                out.append(Passage(passage_id(title, context), title, context, tuple(qs)))
    _check_unique(out, problems)
    problems.raise_if_any()
    return out


# ---------------------------------------------------------------------------------------------- hf_squad


def _hf_rows(path: Path, split: str) -> list:
    if path.is_dir():
        import datasets  # heavy; only this format needs it

        try:
            ds = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as err:
            raise DataError(f"{path}: not a folder written by datasets' save_to_disk ({err})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{path}: no split {split!r} (data.split); available: {', '.join(ds)}")
            ds = ds[split]
        return ds.to_list()
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: cannot read parquet: {err}") from None
    if suffix in (".json", ".jsonl"):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return _json_or_jsonl(path)
    raise DataError(f"{path}: hf_squad wants a save_to_disk folder or a .json/.jsonl/.parquet file of rows")


def _json_or_jsonl(path: Path) -> list:
    # `Dataset.to_json` writes JSON Lines even when the file is named .json, so try both.
    try:
        data = _read_json(path)
    except DataError:
        data = None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("data"), list):
            raise DataError(f"{path}: this looks like SQuAD v1.1 JSON, not rows: use data.kind: squad_json")
        return [data]  # JSON Lines holding a single row
    if data is not None:
        raise DataError(f"{path}: expected a JSON list of rows or JSON Lines, got a JSON {type(data).__name__}")
    rows, problems = [], _Problems(path)
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                problems.add(f"line {n}", f"not valid JSON: {err.msg}")
    problems.raise_if_any()
    return rows


def read_hf_squad(path: Path, split: str = "validation") -> list[Passage]:
    path = Path(path)
    rows = _hf_rows(path, split)
    problems = _Problems(path)
    groups: dict[str, tuple[str, list[Question]]] = {}  # context -> (title, questions), in first-seen order
    for i, row in enumerate(rows):
        where = _label(f"row {i}", row, id_key="id")
        if not isinstance(row, dict):
            problems.add(where, f"expected an object, got {type(row).__name__}")
            continue
        qid, title = _text(row, "id", problems, where), _text(row, "title", problems, where, allow_empty=True)
        context, question = _text(row, "context", problems, where), _text(row, "question", problems, where)
        ans = row.get("answers")
        texts = ans.get("text") if isinstance(ans, dict) else None
        if not isinstance(texts, list):
            problems.add(where, "'answers' must be {'text': [...], 'answer_start': [...]}")
            continue
        golds = _answers([{"text": t} for t in texts], problems, where)
        if None in (qid, title, context, question, golds):
            continue
        groups.setdefault(context, (title, []))[1].append(Question(qid, question, golds[0], golds[1]))
    if not rows:
        problems.add("", "no rows")
    out = [Passage(passage_id(t, c), t, c, tuple(qs)) for c, (t, qs) in groups.items()]
    _check_unique(out, problems)
    problems.raise_if_any()
    return out
