import json

from seal_repro.knowledge.sequences import TITLE_TEMPLATE, split_reference, split_self_edit, training_sequences
from seal_repro.spec.inner_loop import InnerLoopSpec


def test_lines_split_drops_blank_lines():
    assert split_self_edit("a fact.\n\n  another fact.  \n", "lines") == ["a fact.", "another fact."]


def test_none_keeps_whole_text():
    assert split_self_edit("one\ntwo", "none") == ["one\ntwo"]


def test_segments_split_on_dashes():
    assert split_self_edit("one\ntwo\n---\nthree", "segments") == ["one\ntwo", "three"]


def test_preamble_before_numbered_list_is_dropped():
    text = "Here are the implications:\n1. The bridge opened in 1874.\n2. It is long."
    assert split_self_edit(text, "lines") == ["1. The bridge opened in 1874.", "2. It is long."]


def test_preamble_kept_when_not_followed_by_numbered_list():
    assert split_self_edit("Intro:\nThe bridge opened.", "lines") == ["Intro:", "The bridge opened."]


def test_self_qa_blocks_stay_together():
    text = "Question 1: Who?\nAnswer: Odrin.\nQuestion 2: When?\nAnswer: 1874."
    assert split_self_edit(text, "lines") == ["Question 1: Who?\nAnswer: Odrin.", "Question 2: When?\nAnswer: 1874."]


def test_passage_appended_last_and_title_prefixed():
    spec = InnerLoopSpec(prefix_title=True)
    seqs = training_sequences("f1\nf2", "Title", "The passage.", spec)
    assert seqs == ["Title\nf1", "Title\nf2", "Title\nThe passage."]


def test_no_self_edit_means_passage_only_and_append_can_be_off():
    assert training_sequences(None, "T", "P.", InnerLoopSpec(append_passage=False)) == ["P."]
    assert training_sequences("f1", "T", "P.", InnerLoopSpec(append_passage=False)) == ["f1"]


# -- split_rules: reference (the reference's build_train_sequences, knowledge-incorporation/src/utils.py:162-198) --
REF_LINES = InnerLoopSpec(split="lines", split_rules="reference", prefix_title=True)
REF_SEGMENTS = InnerLoopSpec(split="segments", split_rules="reference", prefix_title=True)


def test_reference_header_dropped_only_when_the_next_line_starts_with_1():
    text = "**Implications:**\n\n1. The bridge opened in 1874.\n2. It is long."
    assert split_reference(text, "lines") == ["1. The bridge opened in 1874.", "2. It is long."]
    # ours keeps a header that does not end in ':' or is followed by a blank line
    assert split_self_edit(text, "lines")[0] == "**Implications:**"
    assert split_reference("Intro:\nThe bridge opened.\n- It is long.", "lines") == [
        "Intro:", "The bridge opened.", "- It is long."]
    assert split_reference("Sure!\n1) one\n2) two", "lines") == ["Sure!", "1) one", "2) two"]  # "1)" is not "1."


def test_reference_lines_cut_at_dashes_first_even_inside_a_line():
    assert split_reference("a\n---\nb---c\n\n  d  ", "lines") == ["a", "b", "c", "d"]
    assert split_reference("a\n---\nb---c", "segments") == ["a", "b", "c"]
    assert split_reference("one\ntwo", "segments") == ["one\ntwo"]


def test_reference_self_qa_blocks_need_question_and_answer():
    # (the self-qa prompt ends in "Question 1: ", so the completion starts without it; blocks are not stripped)
    text = "What is it?\nAnswer: a bridge.\nQuestion 2: When?\nAnswer: 1874.\n\nQuestion 3: Where?\nAnswer: Paris."
    assert split_reference(text, "lines") == [
        "Question 1: What is it?\nAnswer: a bridge.", "Question 2: When?\nAnswer: 1874.\n", "Question 3: Where?\nAnswer: Paris."]
    # no "Answer:": plain lines
    assert split_reference("Question 1: Who?\nQuestion 2: When?", "lines") == ["Question 1: Who?", "Question 2: When?"]


def test_reference_empty_self_edit():
    # lines (split_newlines true): the passage alone; segments (false): a title-only line, then the passage
    assert training_sequences(None, "T", " P. ", REF_LINES) == ["T\nP."]
    assert training_sequences("", "T", "P.", REF_SEGMENTS) == ["T\n", "T\nP."]
    assert training_sequences(None, "T", "P.", REF_SEGMENTS.model_copy(update={"prefix_title": False})) == ["P."]


def test_reference_template_is_title_newline_text():
    assert TITLE_TEMPLATE.format(title="Super Bowl 50", text="x") == "Super Bowl 50\nx"
    assert training_sequences("a\nb", "T", "P.", REF_LINES) == ["T\na", "T\nb", "T\nP."]


def test_reference_worked_example(shared_dir):
    """The reference's construction, worked by hand from utils.py:162-198 for the first passage of gpt4_1_val.json
    (title 'Genghis Khan') and its first GPT-4.1 completion, split as the single-passage evaluation does
    (split_newlines true): 14 numbered lines (the '**Implications:**' header dropped), then the passage, each after
    'Genghis Khan\\n'; unsplit (CPT), the whole completion and the passage."""
    article = json.loads((shared_dir / "data/seal-squad/eval/gpt4_1_val.json").read_text())[0]
    seqs = training_sequences(article["completions"][0], article["title"], article["context"], REF_LINES)
    assert len(seqs) == 15 and all(s.startswith("Genghis Khan\n") for s in seqs)
    assert seqs[0] == ("Genghis Khan\n1. The Shah\u2019s army suffered from internal divisions and feuding, weakening "
                       "their overall effectiveness.")
    assert [s.split("\n", 1)[1].split(".", 1)[0] for s in seqs[:14]] == [str(i) for i in range(1, 15)]
    assert seqs[-1] == "Genghis Khan\n" + article["context"].strip()
    unsplit = training_sequences(article["completions"][0], article["title"], article["context"], REF_SEGMENTS)
    assert unsplit == ["Genghis Khan\n" + article["completions"][0].strip(), seqs[-1]]
    assert unsplit[0].startswith("Genghis Khan\n**Implications:**\n\n1. The Shah")
