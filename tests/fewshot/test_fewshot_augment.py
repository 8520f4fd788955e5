import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seal_repro.fewshot.augment import (
    BASIC_OPS,
    FAMILIES,
    IDENTITY,
    Chain,
    ColourPermutation,
    DemoTransform,
    GridTransform,
    ReverseDemos,
    RotateDemos,
    Symmetry,
    RandomTranslate,
    Roll,
    Upscale,
    family_transforms,
    reference_colour_permutation,
    reference_family,
)
from seal_repro.fewshot.grids import MAX_SIDE, grid_problems, shape

SETTINGS = settings(derandomize=True, database=None, max_examples=60, deadline=None)


@st.composite
def grids(draw, max_side=30):
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    flat = draw(st.lists(st.integers(0, 9), min_size=rows * cols, max_size=rows * cols))
    return tuple(tuple(flat[r * cols : (r + 1) * cols]) for r in range(rows))


ALL_GRID_TRANSFORMS = [IDENTITY] + [t for f in ("basic", "size", "chain") for t in family_transforms(f)] + [
    ColourPermutation((0, 2, 3, 4, 5, 6, 7, 8, 9, 1)),
    Chain(Symmetry("rot90"), ColourPermutation((0, 9, 8, 7, 6, 5, 4, 3, 2, 1))),
] + [  # the reference's (inner_loop.augmentations: reference): every grid augmenter of its four flags
    t for f in FAMILIES for t in reference_family(f) if not isinstance(t, RandomTranslate)
] + [Roll(0, 0), Roll(1, 3), Roll(-2, 5)]


def _largest_fitting_side(t) -> int:
    return max(s for s in range(1, MAX_SIDE + 1) if t.fits(tuple(tuple([0] * s) for _ in range(s))))


@pytest.mark.parametrize("t", ALL_GRID_TRANSFORMS, ids=lambda t: t.name)
def test_invert_undoes_apply(t):
    @settings(derandomize=True, database=None, max_examples=30, deadline=None)
    @given(g=grids(max_side=_largest_fitting_side(t)))
    def check(g):
        assert t.fits(g)
        out = t.apply(g)
        assert grid_problems(out) == []
        assert t.invert(out) == g

    check()


@SETTINGS
@given(g=grids())
def test_shapes(g):
    r, c = shape(g)
    for op in ("identity", "rot180", "flip_h", "flip_v"):
        assert shape(Symmetry(op).apply(g)) == (r, c)
    for op in ("rot90", "rot270", "transpose", "anti_transpose"):
        assert shape(Symmetry(op).apply(g)) == (c, r)
    for k in (2, 3):
        up = Upscale(k)
        assert up.fits(g) == (r * k <= MAX_SIDE and c * k <= MAX_SIDE)
        if up.fits(g):
            assert shape(up.apply(g)) == (r * k, c * k)


@SETTINGS
@given(g=grids())
def test_two_symmetries_compose_to_a_symmetry(g):
    # why chains pair a symmetry with upscaling: chains of two symmetries add nothing new
    images = {Symmetry(op).apply(g) for op in ("identity",) + BASIC_OPS}
    assert Chain(Symmetry("rot90"), Symmetry("flip_h")).apply(g) in images


def test_concrete_orientations():
    g = ((1, 2), (3, 4))
    assert Symmetry("rot90").apply(g) == ((3, 1), (4, 2))  # clockwise
    assert Symmetry("rot270").apply(g) == ((2, 4), (1, 3))
    assert Symmetry("flip_h").apply(g) == ((2, 1), (4, 3))
    assert Symmetry("flip_v").apply(g) == ((3, 4), (1, 2))
    assert Symmetry("transpose").apply(g) == ((1, 3), (2, 4))
    assert Symmetry("anti_transpose").apply(g) == ((4, 2), (3, 1))
    assert Upscale(2).apply(((1, 2),)) == ((1, 1, 2, 2), (1, 1, 2, 2))


def test_upscale_refuses_to_leave_30x30_and_inverts_imperfect_predictions():
    big = tuple(tuple([0] * 16) for _ in range(2))
    assert not Upscale(2).fits(big)
    with pytest.raises(ValueError, match="exceeds 30x30"):
        Upscale(2).apply(big)
    assert Upscale(2).invert(((1, 1, 2), (1, 1, 2), (3, 3, 4))) == ((1, 2), (3, 4))


def test_chain_inverse_is_reversed():
    t = Chain(Symmetry("rot90"), Upscale(2))
    g = ((1, 2, 3),)
    assert t.apply(g) == Upscale(2).apply(Symmetry("rot90").apply(g))
    assert t.name == "rot90+upscale2"


def test_colour_permutation_fixes_background():
    with pytest.raises(ValueError):
        ColourPermutation((1, 0, 2, 3, 4, 5, 6, 7, 8, 9))
    assert ColourPermutation((0, 2, 1, 3, 4, 5, 6, 7, 8, 9)).apply(((0, 1, 2),)) == ((0, 2, 1),)


@pytest.mark.parametrize("t", [ReverseDemos(), RotateDemos(1), RotateDemos(2)], ids=lambda t: t.name)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
def test_demo_transforms_invert(t, n):
    demos = tuple((((i,),), ((i,),)) for i in range(n))
    out = t.apply(demos)
    assert sorted(out) == sorted(demos)
    assert t.invert(out) == demos
    if n >= 3:
        assert out != demos


def test_families():
    assert len(family_transforms("basic")) == 7
    assert [t.name for t in family_transforms("size")] == ["upscale2", "upscale3"]
    assert all(isinstance(t, GridTransform) for f in ("basic", "size", "chain") for t in family_transforms(f))
    assert all(isinstance(t, DemoTransform) and not hasattr(t, "fits") for t in family_transforms("repeat"))
    names = [t.name for f in FAMILIES for t in family_transforms(f)]
    assert len(names) == len(set(names)) and "identity" not in names
    with pytest.raises(ValueError, match="known: basic, size, chain, repeat"):
        family_transforms("colour")


@SETTINGS
@given(i=grids(), o=grids(), seed=st.integers(0, 2**31 - 1))
def test_reference_translation_is_undone_by_its_rolls(i, o, seed):
    """RandomTranslateXY (the reference's wrap-around shift) moves input and output by their own rolls; each roll,
    recomputed from the grid's shape, undoes it."""
    t = RandomTranslate(seed)
    ti, to = t.apply_pair((i, o))
    roll_in, roll_out = t.rolls(shape(ti), shape(to))
    assert roll_in.invert(ti) == i and roll_out.invert(to) == o
    assert max(abs(roll_in.rows), abs(roll_in.cols), abs(roll_out.rows), abs(roll_out.cols)) <= 3


@SETTINGS
@given(g=grids(max_side=8), seed=st.integers(0, 2**31 - 1))
def test_reference_colour_permutation_is_inverted(g, seed):
    import numpy as np

    p = reference_colour_permutation([g], np.random.RandomState(seed))
    assert p.invert(p.apply(g)) == g and p.apply(((0,),)) == ((0,),)
