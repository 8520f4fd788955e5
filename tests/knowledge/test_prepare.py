"""prepare_data's question rows carry their passage's title, which an answer prompt may show ({title})."""

import json

from seal_repro.knowledge.prepare import write_data
from seal_repro.spec.experiment import ExperimentSpec


def test_question_rows_carry_the_passage_title(tmp_path):
    spec = ExperimentSpec.model_validate({"model": {"chat_template": False}, "data": {"kind": "fictional",
                                                                                       "n_passages": 2}})
    evaluation, _ = write_data(spec, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    titles = {p.id: p.title for p in evaluation}
    assert rows and all(r["title"] == titles[r["passage_id"]] and r["title"] for r in rows)
    assert set(rows[0]) == {"id", "passage_id", "title", "question", "answer", "golds"}
