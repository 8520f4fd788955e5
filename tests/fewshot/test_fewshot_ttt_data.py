import pytest

from seal_repro.fewshot.augment import BASIC_OPS, Symmetry, Upscale
from seal_repro.fewshot.grids import grid_to_text, text_to_grid
from seal_repro.fewshot.ttt_data import build_ttt_examples, format_task_prompt, leave_out_splits


def _demo(i: int, side: int = 2):
    # input: a side x side grid of colour i with one marked corner; output: its mirror image
    g = tuple(tuple(i if (r, c) != (0, 0) else 0 for c in range(side)) for r in range(side))
    return g, Symmetry("flip_h").apply(g)


DEMOS = tuple(_demo(i) for i in range(1, 5))


def test_prompt_format():
    prompt = format_task_prompt(DEMOS[:1], DEMOS[1][0])
    assert prompt.endswith("Input:\n02\n22\nOutput:\n")
    assert "Input:\n01\n11\nOutput:\n10\n11\n\n" in prompt


def test_leave_out_splits():
    assert leave_out_splits(1) == []
    assert leave_out_splits(2) == [((1,), 0), ((0,), 1)]
    loo = leave_out_splits(3, leave_two_out=False)
    assert loo == [((1, 2), 0), ((0, 2), 1), ((0, 1), 2)]
    all_splits = leave_out_splits(4)
    assert len(all_splits) == 4 + 4 * 3
    assert all(q not in ctx and len(ctx) >= 1 for ctx, q in all_splits)


def test_plain_examples_are_leave_out_tasks():
    ex = build_ttt_examples(DEMOS, (), seed=0, max_examples=1000, leave_two_out=False)
    assert len(ex) == 4
    for e in ex:
        query_out = text_to_grid(e.completion)
        assert query_out in [o for _, o in DEMOS]
        assert e.prompt.count("Input:") == 4  # 3 in context + query
        assert e.completion not in e.prompt  # the held-out output is not in its own prompt


def test_families_expand_and_dedup():
    plain = build_ttt_examples(DEMOS, (), seed=0, max_examples=10_000)
    basic = build_ttt_examples(DEMOS, ("basic",), seed=0, max_examples=10_000)
    every = build_ttt_examples(DEMOS, ("basic", "size", "chain", "repeat"), seed=0, max_examples=10_000)
    assert len(plain) == 16 and len(plain) < len(basic) < len(every)
    assert len(set(every)) == len(every)
    # every basic example is the plain task under one symmetry: its completion is a transformed output
    ops = ("identity",) + BASIC_OPS
    outs = {grid_to_text(Symmetry(op).apply(o)) for _, o in DEMOS for op in ops}
    assert {e.completion for e in basic} <= outs
    up = {grid_to_text(Upscale(3).apply(o)) for _, o in DEMOS}
    assert up & {e.completion for e in every}


def test_same_transform_on_every_grid():
    ex = build_ttt_examples(DEMOS[:2], ("basic",), seed=0, max_examples=10_000)
    g_in, g_out = DEMOS[0]
    rot_in, rot_out = Symmetry("rot90").apply(g_in), Symmetry("rot90").apply(g_out)
    q_in, q_out = Symmetry("rot90").apply(DEMOS[1][0]), Symmetry("rot90").apply(DEMOS[1][1])
    expected = format_task_prompt([(rot_in, rot_out)], q_in)
    assert any(e.prompt == expected and e.completion == grid_to_text(q_out) for e in ex)


def test_upscale_skipped_when_too_big():
    big = tuple(_demo(i, side=12) for i in range(1, 3))
    ex = build_ttt_examples(big, ("size",), seed=0, max_examples=10_000)
    sides = {len(text_to_grid(e.completion)) for e in ex}
    assert sides == {12, 24}  # upscale3 would make 36 rows


def test_repeat_reorders_context():
    plain = build_ttt_examples(DEMOS[:3], (), seed=0, max_examples=100, leave_two_out=False)
    rep = build_ttt_examples(DEMOS[:3], ("repeat",), seed=0, max_examples=100, leave_two_out=False)
    assert len(plain) == 3 and len(rep) == 6  # two context demos: reversed = rotated, deduplicated
    assert {e.completion for e in rep} == {e.completion for e in plain}


def test_seeded_shuffle_and_cap():
    a = build_ttt_examples(DEMOS, ("basic", "repeat"), seed=1, max_examples=10)
    b = build_ttt_examples(DEMOS, ("basic", "repeat"), seed=1, max_examples=10)
    c = build_ttt_examples(DEMOS, ("basic", "repeat"), seed=2, max_examples=10)
    assert a == b and len(a) == 10 and a != c
    assert build_ttt_examples(DEMOS, ("repeat", "basic"), seed=1, max_examples=10) == a  # family order irrelevant


def test_errors_and_edge_cases():
    assert build_ttt_examples(DEMOS[:1], ("basic",), seed=0, max_examples=10) == []
    with pytest.raises(ValueError, match="unknown augmentation families"):
        build_ttt_examples(DEMOS, ("colour",), seed=0, max_examples=10)
    with pytest.raises(ValueError, match="max_examples"):
        build_ttt_examples(DEMOS, (), seed=0, max_examples=0)
