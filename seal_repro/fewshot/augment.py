"""Invertible augmentations of ARC tasks, grouped into the families a self-edit switches on.

Grid-level transforms (`apply`/`invert` on one grid; applied to every grid of a task alike):
  basic  - the 7 non-identity symmetries of the square: rot90/rot180/rot270 (clockwise),
           flip_h (mirror left-right), flip_v (upside down), transpose, anti_transpose
  size   - integer upscaling by 2 or 3 (each cell becomes a k x k block); inverted by taking every
           k-th cell, so it also inverts a model's imperfect prediction. Only allowed while the
           result stays within 30x30 (`fits`).
  chain  - a symmetry followed by an upscale by 2. Two symmetries compose to another symmetry
           (the square's group is closed), so a chain of two basics would only duplicate `basic`.
Demonstration-level transforms (`apply`/`invert` on the sequence of in-context demonstrations):
  repeat - the same task shown again with its demonstrations reordered (reversed; rotated by one).
           The repeated copies differ only in order, so deduplication keeps them apart from the
           original only when there are at least two in-context demonstrations.
`ColourPermutation` (fixing 0, the background) is available but in no family of ours: many ARC rules are
about specific colours, which a permutation of colours would break.

The reference implementation's families (spec `inner_loop.augmentations: reference`; few-shot/self-edit.py:144-220,
arclib/augmenters.py) are `REFERENCE_FAMILIES` below, with the reference's names: its `Rotate(90)` is numpy's
counter-clockwise `rot90` (our rot270), `Flip(0)` upside down (our flip_v), `Flip(1)` left-right (our flip_h).
Beyond the symmetries it has reflections (the grid and its mirror image side by side: `Reflect`), a random
wrap-around shift (`RandomTranslate`, whose input and output shifts differ), height/width stretches (`Stretch`)
and tilings (`Tile`); every task it trains on also gets one copy with its colours permuted, 0 fixed
(`reference_colour_permutation`), and its examples shuffled (seal_repro/fewshot/reference_ttt.py). Every grid
transform here has an inverse (tests/fewshot/test_fewshot_augment.py checks invert(apply(g)) == g); the reference
votes only over the symmetries' (inference/preprocess.py:46-58).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from seal_repro.fewshot.grids import MAX_SIDE, Grid, Pair
from seal_repro.spec.arc_self_edit import FAMILIES  # noqa: F401  (the families' names and order live in the schema)

GRID_FAMILIES: tuple[str, ...] = ("basic", "size", "chain")

SymmetryName = Literal["identity", "rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "anti_transpose"]


@runtime_checkable
class GridTransform(Protocol):
    @property
    def name(self) -> str: ...
    def fits(self, grid: Grid) -> bool: ...
    def apply(self, grid: Grid) -> Grid: ...
    def invert(self, grid: Grid) -> Grid: ...


@runtime_checkable
class DemoTransform(Protocol):
    @property
    def name(self) -> str: ...
    def apply(self, demos: Sequence[Pair]) -> tuple[Pair, ...]: ...
    def invert(self, demos: Sequence[Pair]) -> tuple[Pair, ...]: ...


def _arr(grid: Grid) -> np.ndarray:
    return np.asarray(grid, dtype=np.int8)


def _grid(a: np.ndarray) -> Grid:
    return tuple(tuple(int(x) for x in row) for row in a.tolist())


_SYMMETRIES = {
    "identity": lambda a: a,
    "rot90": lambda a: np.rot90(a, k=-1),
    "rot180": lambda a: np.rot90(a, k=2),
    "rot270": lambda a: np.rot90(a, k=1),
    "flip_h": lambda a: a[:, ::-1],
    "flip_v": lambda a: a[::-1, :],
    "transpose": lambda a: a.T,
    "anti_transpose": lambda a: np.rot90(a, k=2).T,
}
_SYMMETRY_INVERSE = {"rot90": "rot270", "rot270": "rot90"}  # every other symmetry is its own inverse


@dataclass(frozen=True)
class Symmetry:
    op: SymmetryName

    def __post_init__(self):
        if self.op not in _SYMMETRIES:
            raise ValueError(f"unknown symmetry {self.op!r}; known: {', '.join(_SYMMETRIES)}")

    @property
    def name(self) -> str:
        return self.op

    def fits(self, grid: Grid) -> bool:
        return True

    def apply(self, grid: Grid) -> Grid:
        return _grid(_SYMMETRIES[self.op](_arr(grid)))

    def invert(self, grid: Grid) -> Grid:
        return _grid(_SYMMETRIES[_SYMMETRY_INVERSE.get(self.op, self.op)](_arr(grid)))


@dataclass(frozen=True)
class Upscale:
    factor: int

    def __post_init__(self):
        if self.factor not in (2, 3):
            raise ValueError(f"upscale factor must be 2 or 3, not {self.factor!r}")

    @property
    def name(self) -> str:
        return f"upscale{self.factor}"

    def fits(self, grid: Grid) -> bool:
        return len(grid) * self.factor <= MAX_SIDE and len(grid[0]) * self.factor <= MAX_SIDE

    def apply(self, grid: Grid) -> Grid:
        if not self.fits(grid):
            raise ValueError(f"{self.name} of a {len(grid)}x{len(grid[0])} grid exceeds {MAX_SIDE}x{MAX_SIDE}")
        return _grid(_arr(grid).repeat(self.factor, axis=0).repeat(self.factor, axis=1))

    def invert(self, grid: Grid) -> Grid:
        return _grid(_arr(grid)[:: self.factor, :: self.factor])


@dataclass(frozen=True)
class ColourPermutation:
    """`mapping[c]` is the new colour of c; 0 (background) maps to itself."""

    mapping: tuple[int, ...]

    def __post_init__(self):
        if sorted(self.mapping) != list(range(10)) or self.mapping[0] != 0:
            raise ValueError("a colour permutation maps 0-9 onto 0-9 one-to-one and fixes 0")

    @property
    def name(self) -> str:
        return "colours" + "".join(map(str, self.mapping))

    def fits(self, grid: Grid) -> bool:
        return True

    def apply(self, grid: Grid) -> Grid:
        return _grid(np.asarray(self.mapping, dtype=np.int8)[_arr(grid)])

    def invert(self, grid: Grid) -> Grid:
        return _grid(np.argsort(np.asarray(self.mapping)).astype(np.int8)[_arr(grid)])


@dataclass(frozen=True)
class Chain:
    """`first`, then `second`; undone in reverse order."""

    first: GridTransform
    second: GridTransform

    @property
    def name(self) -> str:
        return f"{self.first.name}+{self.second.name}"

    def fits(self, grid: Grid) -> bool:
        return self.first.fits(grid) and self.second.fits(self.first.apply(grid))

    def apply(self, grid: Grid) -> Grid:
        return self.second.apply(self.first.apply(grid))

    def invert(self, grid: Grid) -> Grid:
        return self.first.invert(self.second.invert(grid))


@dataclass(frozen=True)
class ReverseDemos:
    @property
    def name(self) -> str:
        return "reverse_demos"

    def apply(self, demos: Sequence[Pair]) -> tuple[Pair, ...]:
        return tuple(demos)[::-1]

    def invert(self, demos: Sequence[Pair]) -> tuple[Pair, ...]:
        return tuple(demos)[::-1]


@dataclass(frozen=True)
class RotateDemos:
    """Move the first `shift` demonstrations to the end."""

    shift: int = 1

    @property
    def name(self) -> str:
        return f"rotate_demos{self.shift}"

    def apply(self, demos: Sequence[Pair]) -> tuple[Pair, ...]:
        demos = tuple(demos)
        k = self.shift % len(demos) if demos else 0
        return demos[k:] + demos[:k]

    def invert(self, demos: Sequence[Pair]) -> tuple[Pair, ...]:
        demos = tuple(demos)
        k = self.shift % len(demos) if demos else 0
        return demos[len(demos) - k :] + demos[: len(demos) - k]


IDENTITY = Symmetry("identity")
BASIC_OPS: tuple[SymmetryName, ...] = ("rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "anti_transpose")


def family_transforms(name: str) -> list[GridTransform] | list[DemoTransform]:
    """The transforms a family switches on (identity excluded: the original is always kept).

    `basic`, `size` and `chain` give GridTransforms; `repeat` gives DemoTransforms.
    """
    if name == "basic":
        return [Symmetry(op) for op in BASIC_OPS]
    if name == "size":
        return [Upscale(2), Upscale(3)]
    if name == "chain":
        return [Chain(Symmetry(op), Upscale(2)) for op in BASIC_OPS]
    if name == "repeat":
        return [ReverseDemos(), RotateDemos(1)]
    raise ValueError(f"unknown augmentation family {name!r}; known: {', '.join(FAMILIES)}")


def fits_all(transform: GridTransform, grids: Sequence[Grid]) -> bool:
    return all(transform.fits(g) for g in grids)


def apply_to_pairs(transform: GridTransform, pairs: Sequence[Pair]) -> tuple[Pair, ...]:
    return tuple((transform.apply(i), transform.apply(o)) for i, o in pairs)


# ------------------------------------------------------------------------------------------------ the reference's

@dataclass(frozen=True)
class Reflect:
    """The grid and its mirror image along `axis` (0: stacked vertically, 1: side by side); `reverse`: the mirror
    image first (arclib/augmenters.py:336-365). Inverted by taking the original half."""

    axis: int
    reverse: bool = False

    @property
    def name(self) -> str:
        return f"Reflect({self.axis}, reverse={self.reverse})"

    def fits(self, grid: Grid) -> bool:
        return (len(grid) if self.axis == 0 else len(grid[0])) * 2 <= MAX_SIDE

    def apply(self, grid: Grid) -> Grid:
        a = _arr(grid)
        mirrored = a[::-1, :] if self.axis == 0 else a[:, ::-1]
        return _grid(np.concatenate((mirrored, a) if self.reverse else (a, mirrored), axis=self.axis))

    def invert(self, grid: Grid) -> Grid:
        a = _arr(grid)
        n = a.shape[self.axis]
        if n % 2:
            raise ValueError(f"{self.name}: an odd side ({n}) is no reflection")
        half = n // 2
        part = slice(half, n) if self.reverse else slice(0, half)
        return _grid(a[part, :] if self.axis == 0 else a[:, part])


@dataclass(frozen=True)
class Stretch:
    """Each row (axis 0: `IncreaseHeight`) or column (axis 1: `IncreaseWidth`) repeated `factor` times
    (arclib/augmenters.py:413-438); inverted by taking every factor-th one."""

    axis: int
    factor: int = 2

    @property
    def name(self) -> str:
        return f"{'IncreaseHeight' if self.axis == 0 else 'IncreaseWidth'}({self.factor})"

    def fits(self, grid: Grid) -> bool:
        return (len(grid) if self.axis == 0 else len(grid[0])) * self.factor <= MAX_SIDE

    def apply(self, grid: Grid) -> Grid:
        return _grid(np.repeat(_arr(grid), self.factor, axis=self.axis))

    def invert(self, grid: Grid) -> Grid:
        a = _arr(grid)
        return _grid(a[:: self.factor, :] if self.axis == 0 else a[:, :: self.factor])


@dataclass(frozen=True)
class Tile:
    """`n` copies of the grid stacked along `axis` (0: vertically, 1: side by side, 2: both: an n x n tiling;
    `Repeat(axis, n)`, arclib/augmenters.py:368-386); inverted by taking the first tile."""

    axis: int
    n: int = 2

    @property
    def name(self) -> str:
        return f"Repeat({self.axis}, {self.n})"

    def _sides(self) -> tuple[int, int]:
        return (self.n if self.axis in (0, 2) else 1), (self.n if self.axis in (1, 2) else 1)

    def fits(self, grid: Grid) -> bool:
        h, w = self._sides()
        return len(grid) * h <= MAX_SIDE and len(grid[0]) * w <= MAX_SIDE

    def apply(self, grid: Grid) -> Grid:
        return _grid(np.tile(_arr(grid), self._sides()))

    def invert(self, grid: Grid) -> Grid:
        a = _arr(grid)
        h, w = self._sides()
        if a.shape[0] % h or a.shape[1] % w:
            raise ValueError(f"{self.name}: a {a.shape[0]}x{a.shape[1]} grid is no tiling")
        return _grid(a[: a.shape[0] // h, : a.shape[1] // w])


@dataclass(frozen=True)
class Roll:
    """A wrap-around shift: `np.roll(grid, (rows, cols), axis=(0, 1))`; inverted by the opposite shift."""

    rows: int
    cols: int

    @property
    def name(self) -> str:
        return f"roll{self.rows},{self.cols}"

    def fits(self, grid: Grid) -> bool:
        return True

    def apply(self, grid: Grid) -> Grid:
        return _grid(np.roll(_arr(grid), (self.rows, self.cols), axis=(0, 1)))

    def invert(self, grid: Grid) -> Grid:
        return _grid(np.roll(_arr(grid), (-self.rows, -self.cols), axis=(0, 1)))


@dataclass(frozen=True)
class RandomTranslate:
    """The reference's `RandomTranslateXY` (arclib/augmenters.py:532-548, applied as augmenters.py:66-85): every
    example gets a copy of the same random state, so every example is shifted alike; within an example the input
    takes draws 1-2 and the output draws 3-4, so input and output are shifted differently. Shifts are 0 to 3 (at
    most the side - 1), with wrap-around (np.roll, no fill colour). The state is not advanced for the next
    augmenter (each example used a copy)."""

    seed: int

    @property
    def name(self) -> str:
        return "RandomTranslateXY()"

    def rolls(self, input_shape: tuple[int, int], output_shape: tuple[int, int]) -> tuple[Roll, Roll]:
        rng = np.random.RandomState(self.seed)
        shifts = [int(rng.randint(0, min(4, side))) for side in (*input_shape, *output_shape)]
        return Roll(shifts[0], shifts[1]), Roll(shifts[2], shifts[3])

    def apply_pair(self, pair: Pair) -> Pair:
        i, o = pair
        roll_in, roll_out = self.rolls((len(i), len(i[0])), (len(o), len(o[0])))
        return roll_in.apply(i), roll_out.apply(o)


def _sym(op: SymmetryName) -> Symmetry:
    return Symmetry(op)


# The reference's names for our symmetries (arclib/augmenters.py:88-106, 318-333, 389-395).
REFERENCE_SYMMETRY = {"Rotate(90)": "rot270", "Rotate(270)": "rot90", "Rotate(180)": "rot180",
                      "Flip(0)": "flip_v", "Flip(1)": "flip_h", "Transpose()": "transpose"}


def reference_family(name: str, seed: int = 0) -> list:
    """The reference's augmenters of one flag (few-shot/self-edit.py:151-209), in its order: GridTransforms,
    and RandomTranslate (a pair transform) in `basic`. `seed`: the random state RandomTranslate copies."""
    sym = {k: _sym(v) for k, v in REFERENCE_SYMMETRY.items()}  # type: ignore[arg-type]
    if name == "basic":
        return [sym["Rotate(90)"], sym["Rotate(270)"], sym["Rotate(180)"], sym["Flip(0)"], sym["Flip(1)"],
                Reflect(0, True), Reflect(1, True), Reflect(0, False), Reflect(1, False), RandomTranslate(seed),
                sym["Transpose()"]]
    if name == "size":
        return [Upscale(2), Stretch(0, 2), Stretch(1, 2)]
    if name == "chain":
        return [Chain(sym[k], Upscale(2)) for k in
                ("Rotate(90)", "Rotate(270)", "Rotate(180)", "Flip(0)", "Flip(1)", "Transpose()")]
    if name == "repeat":
        return [Tile(0, 2), Tile(1, 2), Tile(2, 2)]
    raise ValueError(f"unknown augmentation family {name!r}; known: {', '.join(FAMILIES)}")


def reference_colour_permutation(grids: Sequence[Grid], rng: np.random.RandomState) -> ColourPermutation:
    """The reference's `PermuteColors` (arclib/augmenters.py:116-170) on a task whose grids are `grids` (every
    input and output, the held-out example's output included: use_test_output=True): 0 stays 0; each other colour
    used goes to a colour not used (the unused ones shuffled by `rng`, taken from the end), and once those run
    out, it swaps with one of the used colours (permuted by `rng`). Draws from `rng` exactly as the reference.
    The reference's map is partial (a colour not in it stays); here it is completed to a permutation of 0-9 that
    acts the same on every colour the task uses, so it has an inverse."""
    used = set()
    for g in grids:
        for row in g:
            used.update(row)
    colours = used - {0}
    remaining = list(set(range(1, 10)) - colours)
    colours = list(colours)
    rng.shuffle(remaining)
    permuted = rng.permutation(colours).tolist()
    cmap = {0: 0}
    for c in colours:
        if c in cmap:
            continue
        if remaining:
            new = remaining.pop()
        else:
            new = permuted.pop()
            cmap[new] = c
            if c in permuted:
                permuted.remove(c)
        cmap[c] = new
    # Complete it: the colours the map does not move, in order, onto the images nothing maps to yet, in order.
    images = set(cmap.values())
    if len(images) != len(cmap):
        raise ValueError(f"the colour map {cmap} is not one-to-one")
    free_sources = [c for c in range(10) if c not in cmap]
    free_images = [c for c in range(10) if c not in images]
    cmap.update(zip(free_sources, free_images))
    return ColourPermutation(tuple(cmap[c] for c in range(10)))


def permute_examples(demos: Sequence[Pair], rng: np.random.RandomState) -> tuple[Pair, ...]:
    """The reference's `PermuteExamples` (arclib/augmenters.py:663-670): the demonstrations in `rng.permutation`
    order."""
    return tuple(demos[int(i)] for i in rng.permutation(len(demos)))
