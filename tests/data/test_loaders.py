"""Loaders for the three real formats (valid + malformed fixtures), teacher mapping, windowing."""

import json
from pathlib import Path

import pytest

from seal_repro.data.loaders import MAX_PROBLEM_LINES, load_passages, passage_id, read_hf_squad, read_squad_json
from seal_repro.errors import DataError
from seal_repro.spec.data import DataSpec

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "seal-squad"


def spec(kind, name, **kw):
    return DataSpec(kind=kind, path=str(ASSETS / name), **kw)


def problems(kind, name, **kw) -> list[str]:
    with pytest.raises(DataError) as err:
        load_passages(spec(kind, name, **kw))
    return err.value.lines


# ------------------------------------------------------------------------------------------- seal_json


def test_seal_json_parses_dict_literal_strings_and_real_dicts():
    ps = load_passages(spec("seal_json", "seal_valid.json"))
    assert [p.title for p in ps] == ["Quorvel Bridge", "Normans", "Zhaskor Guild"]
    assert [(q.question, q.answer) for q in ps[0].questions] == [
        ("In what year did the Quorvel Bridge open?", "1874"),
        ("Who designed the Quorvel Bridge?", "Ilsa Marrow"),
    ]
    assert ps[2].questions[2].answer == "Daveth"  # a real dict among literal strings
    assert all(p.teacher_self_edits == () for p in ps)  # only teacher_path supplies them


def test_passage_ids_are_stable_and_derived_from_title_and_context():
    a = load_passages(spec("seal_json", "seal_valid.json"))
    b = load_passages(spec("seal_json", "seal_valid.json"))
    assert [p.id for p in a] == [p.id for p in b]
    assert a[0].id == passage_id("Quorvel Bridge", a[0].context)
    assert len({p.id for p in a}) == 3
    assert a[0].questions[1].id == f"{a[0].id}-q1"


def test_seal_json_malformed_lists_every_problem_with_file_and_record():
    lines = problems("seal_json", "seal_malformed.json")
    f = str(ASSETS / "seal_malformed.json")
    assert all(line.startswith(f + ": ") for line in lines)
    expected = [
        "record 1 (title 'No Context'): no 'context'",
        "record 2 (title 'Broken Literal'): questions[1]: not a dict literal",
        "record 3 (title 'Normans'): questions[2]: no 'answer'",
        "record 4 (title 'Blank'): 'context' is empty",
        "record 5 (title 'No Questions'): 'questions' must be a non-empty list",
        "record 6 (title 'Code'): questions[0]: not a dict literal",
        "record 7: expected an object, got str",
        "record 8 (title 'Bad Types'): questions[0]: 'answer' is int, not a string",
        "record 8 (title 'Bad Types'): 'completions' must be a list of strings",
    ]
    for e in expected:
        assert any(e in line for line in lines), (e, lines)
    assert not any("record 0 " in line for line in lines)
    assert len(lines) == len(expected)


def test_problem_list_is_capped(tmp_path):
    bad = [{"title": f"T{i}", "context": "c", "questions": ["{'question': 'q?'}"]} for i in range(30)]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError) as err:
        load_passages(DataSpec(kind="seal_json", path=str(tmp_path / "bad.json")))
    assert len(err.value.lines) == MAX_PROBLEM_LINES + 1
    assert err.value.lines[-1] == "… and 10 more problems"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"data": []}', "use data.kind: squad_json"),
        ('"a string"', "expected a JSON list"),
    ],
)
def test_seal_json_unreadable_or_wrong_shape(tmp_path, content, message):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_passages(DataSpec(kind="seal_json", path=str(path)))
    assert str(path) in err.value.lines[0]


def test_duplicate_passages_are_an_error(tmp_path):
    rec = {"title": "T", "context": "Same.", "questions": ["{'question': 'q?', 'answer': 'a'}"]}
    (tmp_path / "dup.json").write_text(json.dumps([rec, rec]))
    with pytest.raises(DataError, match="appears twice"):
        load_passages(DataSpec(kind="seal_json", path=str(tmp_path / "dup.json")))


# ------------------------------------------------------------------------------------------- teacher


def test_teacher_completions_match_by_whitespace_normalised_context():
    ps = load_passages(spec("seal_json", "seal_valid.json", teacher_path=str(ASSETS / "seal_teacher.json"), offset=2))
    assert [p.title for p in ps] == ["Zhaskor Guild"]
    # Teacher context differs in whitespace only; empty completions are dropped.
    assert ps[0].teacher_self_edits == ("The Zhaskor Guild dates from 1702.", "Daveth was home to the Zhaskor Guild.")


def test_teacher_without_usable_entry_is_an_error():
    # 'Normans' has only blank completions in the teacher file.
    lines = problems("seal_json", "seal_valid.json", teacher_path=str(ASSETS / "seal_teacher.json"))
    assert len(lines) == 1 and "Normans" in lines[0] and "no non-empty completions" in lines[0]
    lines = problems("squad_json", "squad_valid.json", teacher_path=str(ASSETS / "seal_teacher.json"))
    assert len(lines) == 3 and sum("no teacher entry for passage p-" in line for line in lines) == 2


# ------------------------------------------------------------------------------------------- windowing


def test_offset_and_n_passages_select_a_window():
    ps = load_passages(spec("seal_json", "seal_valid.json", offset=1, n_passages=2))
    assert [p.title for p in ps] == ["Normans", "Zhaskor Guild"]


@pytest.mark.parametrize("kw", [{"offset": 3}, {"offset": 2, "n_passages": 2}, {"n_passages": 4}])
def test_window_beyond_the_file_is_an_error(kw):
    with pytest.raises(DataError, match="the file has 3"):
        load_passages(spec("seal_json", "seal_valid.json", **kw))


def test_relative_paths_resolve_against_base_dir():
    s = DataSpec(kind="seal_json", path="seal_valid.json", teacher_path="seal_valid.json", n_passages=1)
    ps = load_passages(s, base_dir=ASSETS)
    assert ps[0].teacher_self_edits[1] == "It spans the Tevesk."


def test_fictional_kind_defaults_to_eight_and_honours_offset():
    ps = load_passages(DataSpec(), seed=5)
    assert [p.id for p in ps] == [f"fict-{i:04d}" for i in range(8)]
    shifted = load_passages(DataSpec(offset=3, n_passages=2), seed=5)
    assert shifted == ps[3:5]


# ------------------------------------------------------------------------------------------- squad_json


def test_squad_json_gold_is_first_answer_and_aliases_are_the_other_distinct_ones():
    ps = load_passages(spec("squad_json", "squad_valid.json"))
    assert [p.title for p in ps] == ["Quorvel Bridge", "Quorvel Bridge", "Normans"]
    q = ps[0].questions[0]
    assert (q.id, q.answer, q.aliases) == ("qb-1", "1874", ("in 1874",))
    assert ps[1].questions[0].golds == ("3 years", "3", "three years")


def test_squad_json_malformed():
    lines = problems("squad_json", "squad_malformed.json")
    expected = [
        "data[0] (title 'Normans'): paragraphs[0]: qas[1] (id 'nm-2'): no answers",
        "data[0] (title 'Normans'): paragraphs[0]: qas[2] (id 'nm-3'): no 'question'",
        "data[0] (title 'Normans'): paragraphs[1]: no 'context'",
        "data[0] (title 'Normans'): paragraphs[2]: 'qas' must be a non-empty list",
        "data[1] (title 'Bad Answers'): paragraphs[0]: qas[0] (id 'nm-1'): answers[0] has no 'text'",
        "data[2] (title 'No Paragraphs'): 'paragraphs' must be a non-empty list",
    ]
    for e in expected:
        assert any(e in line for line in lines), (e, lines)
    assert len(lines) == len(expected)


def test_squad_json_rejects_a_seal_file_with_a_hint():
    with pytest.raises(DataError, match="use data.kind: seal_json"):
        read_squad_json(ASSETS / "seal_valid.json")


# ------------------------------------------------------------------------------------------- hf_squad


def test_hf_rows_group_by_context_and_agree_with_squad_json():
    hf = load_passages(spec("hf_squad", "hf_rows.jsonl"))
    squad = load_passages(spec("squad_json", "squad_valid.json"))
    assert hf == squad


def test_hf_json_list_and_parquet(tmp_path):
    rows = [json.loads(line) for line in (ASSETS / "hf_rows.jsonl").read_text().splitlines()]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    expected = read_hf_squad(ASSETS / "hf_rows.jsonl")
    assert read_hf_squad(tmp_path / "rows.json") == expected
    assert read_hf_squad(tmp_path / "rows.parquet") == expected


def test_hf_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (ASSETS / "hf_rows.jsonl").read_text().splitlines()]
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds.select([0]), "validation": ds}).save_to_disk(str(tmp_path / "dict"))
    expected = read_hf_squad(ASSETS / "hf_rows.jsonl")
    assert load_passages(DataSpec(kind="hf_squad", path=str(tmp_path / "single"))) == expected
    assert load_passages(DataSpec(kind="hf_squad", path=str(tmp_path / "dict"))) == expected
    assert len(load_passages(DataSpec(kind="hf_squad", path=str(tmp_path / "dict"), split="train"))) == 1
    with pytest.raises(DataError, match="no split 'test'.*available: train, validation"):
        load_passages(DataSpec(kind="hf_squad", path=str(tmp_path / "dict"), split="test"))
    with pytest.raises(DataError, match="save_to_disk"):
        load_passages(DataSpec(kind="hf_squad", path=str(tmp_path)))


def test_hf_malformed_rows():
    lines = problems("hf_squad", "hf_rows_malformed.jsonl")
    expected = ["row 1 (id 'a-2', title 'T'): no answers", "row 2 (id 'a-3', title 'T'): 'answers' must be",
                "row 3 (id 'a-4', title 'T'): no 'context'"]
    for e in expected:
        assert any(e in line for line in lines), (e, lines)
    assert len(lines) == len(expected)


def test_hf_broken_jsonl_line_and_unknown_suffix(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"id": "x"}\n{"id": \n')
    with pytest.raises(DataError, match=r"rows.jsonl: line 2: not valid JSON"):
        read_hf_squad(tmp_path / "rows.jsonl")
    (tmp_path / "rows.csv").write_text("id\n")
    with pytest.raises(DataError, match="save_to_disk folder or a .json/.jsonl/.parquet"):
        read_hf_squad(tmp_path / "rows.csv")


# ------------------------------------------------------------------------------------------- real release


def test_shared_seal_release_with_gpt41_teacher():
    gpt = SHARED / "eval" / "gpt4_1_val.json"
    if not gpt.exists():
        pytest.skip("../shared (the SEAL reference release) is not present on this machine")
    ps = load_passages(DataSpec(kind="seal_json", path=str(SHARED / "eval" / "naive_val.json"), n_passages=200,
                                teacher_path=str(gpt)))
    assert len(ps) == 200 and len({p.id for p in ps}) == 200
    assert all(len(p.teacher_self_edits) == 5 and p.questions for p in ps)
    assert sum(len(p.questions) for p in ps) == 974
