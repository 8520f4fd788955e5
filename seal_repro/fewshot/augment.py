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
`ColourPermutation` (fixing 0, the background) is available but in no family: many ARC rules are
about specific colours, which a permutation of colours would break.
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
