"""The reference implementation's few-shot protocol, component by component, against worked examples derived from
reading its code (few-shot/ of Continual-Intelligence/SEAL; the examples are those of the notes on it, each
checked there by running the reference's numpy code): grid text and messages, the self-edit prompt, the self-edit
JSON, the augmentations and TTT data, the test-time queries and the vote."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seal_repro.fewshot.augment import (
    REFERENCE_SYMMETRY,
    RandomTranslate,
    Reflect,
    Stretch,
    Symmetry,
    Tile,
    Upscale,
    permute_examples,
    reference_colour_permutation,
    reference_family,
)
from seal_repro.fewshot.formats import REFERENCE, Prompt, reference_grid_text, reference_text_to_grid
from seal_repro.fewshot.reference_ttt import leave_n_tasks, reference_cap, reference_examples, reference_tasks
from seal_repro.fewshot.self_edit import parse_reference_self_edit, self_edit_prompt
from seal_repro.fewshot.tasks import Task
from seal_repro.fewshot.vote import _majority_grid, _top3, reference_queries, reference_query_tasks, reference_vote

G = ((1, 2), (3, 0))  # the notes' worked-example grid [[1,2],[3,0]]

grids = st.integers(1, 6).flatmap(lambda h: st.integers(1, 6).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 9), min_size=w, max_size=w).map(tuple), min_size=h, max_size=h)
    .map(tuple)))


# ------------------------------------------------------------------------------------------------ grid text, messages

def test_grid_text_is_numpys_str():
    assert reference_grid_text(G) == "[[1 2]\n [3 0]]"
    assert reference_grid_text(((5, 0, 5),)) == "[[5 0 5]]"


@given(grids)
@settings(max_examples=60, deadline=None)
def test_grid_text_equals_numpy_and_decodes_back(g):
    assert reference_grid_text(g) == str(np.array(g))
    assert reference_text_to_grid(reference_grid_text(g)) == g
    assert reference_text_to_grid(reference_grid_text(g) + "#") == g  # the footer is dropped, as the reference does


def test_decoder_reads_as_the_reference_reads():
    # double spaces, '#' anywhere, surrounding whitespace (representers.py:631 strips); a blank line inside breaks
    # the row count (the reference loses such a sample)
    assert reference_text_to_grid("[[1  2]\n [3 0]]#") == G
    assert reference_text_to_grid("[[1 2]\n [3 0]]\n") == G
    assert reference_text_to_grid("[[1 2]\n\n [3 0]]") is None
    # the reference reshapes to (newlines + 1) rows whatever the brackets say
    assert reference_text_to_grid("[[1 2 3]\n [4]]") == ((1, 2), (3, 4))
    assert reference_text_to_grid("[[1 2]\n [3]]") is None
    assert reference_text_to_grid("[[12 2]\n [3 0]]") is None  # not a colour: no grid here (the reference: a guess)
    assert reference_text_to_grid("the answer") is None and reference_text_to_grid(None) is None


def test_messages_are_the_references_worked_example():
    """notes §4: demo [[1,2],[3,0]] -> [[2,1],[0,3]], test [[5,0],[0,5]] -> [[0,5],[5,0]]."""
    prompt = REFERENCE.task_prompt([(G, ((2, 1), (0, 3)))], ((5, 0), (0, 5)))
    assert prompt.system == (
        "Figure out the underlying transformation in the following examples and apply it to the test case. Here are "
        "some examples from this transformation, your answer must follow the format.\nThe input-output grids are "
        "provided as python arrays:\n[[1 2]\n [3 0]] -> [[2 1]\n [0 3]]#\n")
    assert prompt.user == "[[5 0]\n [0 5]] -> "
    assert REFERENCE.completion(((0, 5), (5, 0))) == "[[0 5]\n [5 0]]#"
    assert REFERENCE.task_prompt([], G).system.endswith("python arrays:\n")  # a 0-demonstration task


def test_self_edit_prompt_is_the_references_worked_example():
    """notes §1: get_prompt's user message for the 1-demonstration task, with the reference's prompt as template."""
    task = Task("00000000", ((G, ((2, 1), (0, 3))),), ((G, G),))
    text = self_edit_prompt(task, "{demonstrations}------\n\n\nYou are configuring", REFERENCE)
    assert text == "Input:\n1 2\n3 0\n\nOutput:\n2 1\n0 3\n\n------\n\n\nYou are configuring"


def test_render_puts_the_system_message_first():
    class Tok:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "|".join(f"{m['role']}:{m['content']}" for m in messages) + ("|assistant:" * add_generation_prompt)

    from seal_repro.fewshot.formats import render

    assert render(Tok(), Prompt("u", "s"), True) == "system:s|user:u|assistant:"
    assert render(Tok(), Prompt("u"), True) == "user:u|assistant:"
    assert render(Tok(), Prompt("u", "s"), False) == "su"
    assert Prompt("u").key == "u" and Prompt("u", "s").key != "u"


# ------------------------------------------------------------------------------------------------ augmentations

SYM = {k: Symmetry(v) for k, v in REFERENCE_SYMMETRY.items()}


@pytest.mark.parametrize("t, expected", [
    (SYM["Rotate(90)"], ((2, 0), (1, 3))), (SYM["Rotate(270)"], ((3, 1), (0, 2))), (SYM["Rotate(180)"], ((0, 3), (2, 1))),
    (SYM["Flip(0)"], ((3, 0), (1, 2))), (SYM["Flip(1)"], ((2, 1), (0, 3))), (SYM["Transpose()"], ((1, 3), (2, 0))),
    (Reflect(0, True), ((3, 0), (1, 2), (1, 2), (3, 0))), (Reflect(1, True), ((2, 1, 1, 2), (0, 3, 3, 0))),
    (Reflect(0, False), ((1, 2), (3, 0), (3, 0), (1, 2))), (Reflect(1, False), ((1, 2, 2, 1), (3, 0, 0, 3))),
    (Upscale(2), ((1, 1, 2, 2), (1, 1, 2, 2), (3, 3, 0, 0), (3, 3, 0, 0))),
    (Stretch(0, 2), ((1, 2), (1, 2), (3, 0), (3, 0))), (Stretch(1, 2), ((1, 1, 2, 2), (3, 3, 0, 0))),
    (Tile(0, 2), ((1, 2), (3, 0), (1, 2), (3, 0))), (Tile(1, 2), ((1, 2, 1, 2), (3, 0, 3, 0))),
    (Tile(2, 2), ((1, 2, 1, 2), (3, 0, 3, 0), (1, 2, 1, 2), (3, 0, 3, 0))),
], ids=lambda t: getattr(t, "name", ""))
def test_augmenter_worked_examples(t, expected):
    """notes §3: each reference augmenter on [[1,2],[3,0]], as the reference computed it."""
    assert t.apply(G) == expected


def test_chains_are_a_symmetry_then_upscaling():
    chain = reference_family("chain")[0]  # Chain([Rotate(90), IncreaseResolution(2)])
    assert chain.apply(G) == ((2, 2, 0, 0), (2, 2, 0, 0), (1, 1, 3, 3), (1, 1, 3, 3))


def test_the_families_hold_the_references_augmenters_in_order():
    names = {f: [a.name for a in reference_family(f)] for f in ("basic", "size", "chain", "repeat")}
    assert len(names["basic"]) == 11 and names["basic"][9] == "RandomTranslateXY()"
    assert names["size"] == ["upscale2", "IncreaseHeight(2)", "IncreaseWidth(2)"]
    assert len(names["chain"]) == 6 and names["repeat"] == ["Repeat(0, 2)", "Repeat(1, 2)", "Repeat(2, 2)"]


def test_random_translate_shifts_input_and_output_differently_with_wrap_around():
    """notes §3: with RandomState(0) the 2x2 input rolls by (0, 1), the output by (1, 0); grids of sides >= 4 by
    (0, 3) and (1, 0)."""
    t = RandomTranslate(0)
    assert t.apply_pair((G, G)) == (((2, 1), (0, 3)), ((3, 0), (1, 2)))
    roll_in, roll_out = t.rolls((5, 5), (4, 6))
    assert (roll_in.rows, roll_in.cols, roll_out.rows, roll_out.cols) == (0, 3, 1, 0)


def test_colour_permutation_is_the_references_and_fixes_0():
    """notes §3: RandomState(0) on a task whose grids are all [[1,2],[3,0]] maps 1->8, 2->4, 3->7."""
    p = reference_colour_permutation([G] * 4, np.random.RandomState(0))
    assert p.apply(G) == ((8, 4), (7, 0))
    assert p.mapping[0] == 0 and sorted(p.mapping) == list(range(10))


@given(st.sets(st.integers(0, 9), min_size=1), st.integers(0, 2**31 - 1))
@settings(max_examples=200, deadline=None)
def test_colour_permutation_is_one_to_one_for_any_colours_and_seed(colours, seed):
    grid = (tuple(sorted(colours)),)
    p = reference_colour_permutation([grid], np.random.RandomState(seed))
    assert p.mapping[0] == 0 and p.invert(p.apply(grid)) == grid


def test_permute_examples_shuffles_with_the_rng():
    demos = tuple(((i,),) for i in range(3))
    pairs = tuple((d, d) for d in demos)
    order = np.random.RandomState(0).permutation(3)
    assert permute_examples(pairs, np.random.RandomState(0)) == tuple(pairs[i] for i in order)


# ------------------------------------------------------------------------------------------------ TTT data

def test_leave_n_tasks_include_the_references_zero_demonstration_tasks():
    a, b = (G, G), (((0,),), ((0,),))
    assert leave_n_tasks([a, b], 1) == [((b,), a), ((a,), b)]
    assert leave_n_tasks([a, b], 2) == [((), a), ((), b)]  # leave-two-out of 2 demonstrations: none left
    assert len(leave_n_tasks([a, b, a], 2)) == 6


def test_ttt_example_counts_are_the_references():
    """notes §3 table (computed by running the reference): 6150a2bd (2 demonstrations): none 4, basic 96, size 32,
    chain 56, repeat 32, all 192; 4be741c5 (3): 10, 188, 44, 42, 44, 264."""
    from seal_repro.fewshot.tasks import load_arc_tasks

    families = [(), ("basic",), ("size",), ("chain",), ("repeat",), ("basic", "size", "chain", "repeat")]
    expected = {"6150a2bd": (4, 96, 32, 56, 32, 192), "4be741c5": (10, 188, 44, 42, 44, 264)}
    for task in load_arc_tasks("train", ids=list(expected)):
        got = tuple(len(reference_examples(task.train, f, REFERENCE, seed=0, leave_two_out=True)) for f in families)
        assert got == expected[task.id]


def test_ttt_tasks_permute_colours_only_when_augmenting_and_are_reproducible():
    demos = tuple((((i, 1), (2, 3)), ((3, 2), (1, i))) for i in range(3))
    plain = reference_tasks(demos, (), 1, seed=0)
    colours = {c for t in plain for p in t[0] + (t[1],) for g in p for row in g for c in row}
    assert colours == {0, 1, 2, 3}  # no augmenter chosen: examples shuffled, colours untouched
    assert reference_tasks(demos, ("basic",), 2, seed=0) == reference_tasks(demos, ("basic",), 2, seed=0)
    assert reference_cap(list(range(10)), 4, 0) == [list(range(10))[i] for i in
                                                  _shuffled(10, 0)[:4]] and reference_cap([1, 2], 4, 0) == [1, 2]


def _shuffled(n, seed):
    order = list(range(n))
    np.random.RandomState(seed).shuffle(order)
    return order


# ------------------------------------------------------------------------------------------------ queries and vote

def test_query_counts_are_the_references():
    """notes §6: queries per test input = leave-one-out variants after dedup + 5: 7 for 2 demonstrations (66e6c45b),
    10 for 3 (68b67ca3), 16 for 4 (59341089), 20 for 5 (b1fc8b8e)."""
    from seal_repro.fewshot.tasks import load_arc_tasks

    tasks = load_arc_tasks("eval", ids=["66e6c45b", "68b67ca3", "59341089", "b1fc8b8e"])
    assert [len(reference_query_tasks(t, 0)) for t in tasks] == [7, 10, 16, 20]


def test_queries_transform_the_whole_task_and_name_the_inverter(task):
    qs = reference_queries(task, 0, REFERENCE)
    buckets = [q.bucket for q in qs]
    assert set(buckets) <= {"identity", "Transpose()", "Flip(0)", "Flip(1)", "Rotate(270)", "Rotate(180)"}
    for q in qs:
        if q.inverse is not None:  # undoing the transform gives the real expected output
            assert q.inverse(q.target) == task.test[0][1]
        else:
            assert q.target == task.test[0][1] and len(q.prompt.system.split("->")) == len(task.train)  # N-1 demos


A, B, C = ((1,),), ((2,),), ((3,),)


def test_top3_fills_missing_places_with_row_and_column_majorities():
    assert _top3([A, A, B]) == (A, B, A)  # third: row majority is A = first, so the column majority (also A)
    assert _top3([]) == (None, None, None)
    x, y = ((1, 2), (3, 4)), ((1, 2), (5, 6))
    assert _majority_grid([x, x, y]) == x and _majority_grid([x, y, y], transpose=True) == y


def test_reference_vote_worked_examples():
    # C1 is the pooled favourite; C2 the runner-up
    assert reference_vote([("identity", A), ("identity", A), ("Flip(0)", B)]) == [A, B]
    # nothing decodable: no attempt (the reference submits [[0]] twice, which is never right either)
    assert reference_vote([]) == []
    # equal pool counts for C2 and C3: the one the identity bucket holds more of is C2
    votes = [("identity", A), ("identity", A), ("identity", C), ("Transpose()", B), ("Transpose()", B)]
    assert reference_vote(votes)[0] in (A, B) and len(reference_vote(votes)) == 2
    assert len(reference_vote(votes, 1)) == 1


def test_predict_under_the_reference_scheme_solves_with_a_perfect_model(task):
    from seal_repro.fewshot.vote import predict, queries, task_solved
    from seal_repro.spec.fewshot import FewShotSpec

    spec = FewShotSpec.model_validate({"model": {"chat_template": True},
                                       "evaluation": {"voting": "reference", "prompt_format": "reference"}})
    answers = {q.prompt.key: REFERENCE.completion(q.target) for q in queries(task, 0, spec)}
    attempts = predict(task, lambda keys: [answers[k] for k in keys], spec)
    assert task_solved(attempts, task) and attempts[0][0] == task.test[0][1]


# ------------------------------------------------------------------------------------------------ self-edit JSON

FULL = ('{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false, '
        '"use_chain_augmentations": "false", "use_repeat_augmentations": 0}, '
        '"training": {"strategy": "train_using_output_tokens", "learning_rate": 0.0001, "num_train_epochs": 3}}')


def _edit(text):
    parsed = parse_reference_self_edit(text)
    assert parsed.ok, parsed.reason
    e = parsed.self_edit
    return e.families, e.training.loss_on, e.training.learning_rate, e.training.epochs


def test_reference_self_edit_read_as_the_reference_reads_it():
    # truthiness: the string "false" switches a flag on, 0 off
    assert _edit(FULL) == (("basic", "chain"), "output_tokens", 1e-4, 3)
    assert _edit(FULL.replace('"num_train_epochs": 3', '"num_train_epochs": 1.5'))[3] == 1.5
    # a missing flag: no augmentation and 0 epochs
    assert _edit(FULL.replace('"use_size_augmentations": false, ', ""))[::3] == ((), 0)
    # a missing training key: 0 epochs, learning rate 0, all tokens
    no_lr = FULL.replace('"learning_rate": 0.0001, ', "")
    assert _edit(no_lr)[1:] == ("all_tokens", 0.0, 0)
    # an unknown strategy: 0 epochs; a negative epoch count: 0; no range check on the learning rate
    assert _edit(FULL.replace("train_using_output_tokens", "train_fast"))[3] == 0
    assert _edit(FULL.replace('"num_train_epochs": 3', '"num_train_epochs": -2'))[3] == 0
    assert _edit(FULL.replace("0.0001", "0.5"))[2] == 0.5


@pytest.mark.parametrize("text, reason", [
    ("Sure! " + FULL, "not one JSON document"),          # the whole output must be the JSON (json.loads)
    ("```json\n" + FULL + "\n```", "not one JSON document"),
    ('["a"]', "not an object"),
    ('{"training": {}}', "data_generation: missing"),
    ('{"data_generation": {"use_basic_augmentations": [true]}, "training": {}}', "a list or object"),
    (FULL.replace("0.0001", '"0.0001"'), "learning_rate"),
    (FULL.replace("0.0001", "-0.1"), "learning_rate"),
    (FULL.replace('"num_train_epochs": 3', '"num_train_epochs": "3"'), "num_train_epochs"),
    ("", "empty"),
])
def test_reference_self_edit_failures(text, reason):
    parsed = parse_reference_self_edit(text)
    assert not parsed.ok and reason in parsed.reason


def test_values_the_reference_overwrites_never_fail():
    # a missing strategy zeroes learning rate and epochs before the trainer sees the bad ones
    text = FULL.replace('"strategy": "train_using_output_tokens", ', "").replace("0.0001", '"x"')
    assert _edit(text)[1:] == ("all_tokens", 0.0, 0)
