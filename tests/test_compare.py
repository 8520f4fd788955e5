import json

from seal_repro.cli import main


def _records(path, correct_by_passage):
    path.mkdir(parents=True)
    rows = [{"condition": "passage", "passage_id": p, "correct": c}
            for p, cs in correct_by_passage.items() for c in cs]
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_pairs_passages_and_reports_p(tmp_path, capsys):
    _records(tmp_path / "a", {f"p{i}": [False, False] for i in range(10)})
    _records(tmp_path / "b", {f"p{i}": [True, True] for i in range(10)})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("passage"))
    diff, p = float(line.split()[3]), float(line.split()[-2])
    assert diff == 1.0 and p < 0.01


def test_compare_missing_folder_is_exit_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    err = capsys.readouterr().err
    assert "records.jsonl: no such file" in err and "Traceback" not in err
