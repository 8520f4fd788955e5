from seal_repro.knowledge.sequences import split_self_edit, training_sequences
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
