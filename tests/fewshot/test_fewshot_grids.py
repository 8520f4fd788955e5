import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seal_repro.errors import DataError
from seal_repro.fewshot.grids import cells, grid_problems, grid_to_text, shape, text_to_grid, validate_grid

SETTINGS = settings(derandomize=True, database=None, max_examples=80, deadline=None)


@st.composite
def grids(draw, max_side=30):
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    flat = draw(st.lists(st.integers(0, 9), min_size=rows * cols, max_size=rows * cols))
    return tuple(tuple(flat[r * cols : (r + 1) * cols]) for r in range(rows))


@SETTINGS
@given(grids())
def test_text_round_trip(g):
    text = grid_to_text(g)
    assert text_to_grid(text) == g
    assert len(text.splitlines()) == len(g)


def test_text_format_is_digits_one_row_per_line():
    assert grid_to_text(((0, 1, 2), (3, 4, 5))) == "012\n345"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("  012\n345\n\n", ((0, 1, 2), (3, 4, 5))),  # surrounding whitespace
        ("012\r\n345", ((0, 1, 2), (3, 4, 5))),  # Windows line ends
        ("012\n345\n\nInput:\n999", ((0, 1, 2), (3, 4, 5))),  # run-on after a blank line is ignored
    ],
)
def test_text_to_grid_tolerates(text, expected):
    assert text_to_grid(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "01\n012", "0 1\n2 3", "01a", "0,1", "١٢", "²", "0" * 31, "\n".join(["0"] * 31), "012\nfoo", None, 12],
)
def test_text_to_grid_rejects_without_raising(text):
    assert text_to_grid(text) is None


def test_validate_grid_accepts_numpy_and_lists():
    g = validate_grid(np.array([[1, 2], [3, 4]]), "x")
    assert g == ((1, 2), (3, 4)) and isinstance(g[0][0], int)
    assert shape(g) == (2, 2) and cells(g) == 4


def test_validate_grid_names_task_and_place():
    with pytest.raises(DataError) as err:
        validate_grid([[1, 2, 3], [1, 2, 3], [1, 2, 3, 4]], "task 44f52bb0: train[1].input")
    assert err.value.lines == ["task 44f52bb0: train[1].input: row 2 has 4 cells, row 0 has 3"]


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([], "has 0 rows"),
        ([[0]] * 31, "has 31 rows"),
        ([[0] * 31], "row 0 has 31 cells"),
        ([[]], "row 0 has 0 cells"),
        ([[0, 10]], "10 is not a colour"),
        ([[0, -1]], "-1 is not a colour"),
        ([[0, True]], "True is not a colour"),
        ([[0, 1.0]], "1.0 is not a colour"),
        ([[0, "1"]], "'1' is not a colour"),
        ([5], "row 0 is int"),
        ("012", "expected a list of rows"),
    ],
)
def test_grid_problems(value, fragment):
    problems = grid_problems(value)
    assert problems and fragment in problems[0]
