"""The authoring tool: percent scripts -> nbgrader notebooks, the rules check, scripts in sync."""
from pathlib import Path

import nbformat
import pytest

from autograder.authoring import parse_script, problems, setup_cell

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO / "docs" / "lessons").glob("[0-9][0-9]_*.py"))

EXAMPLE = '''# %% [markdown]
# # Title
# text
# %%
import math
# %% solution id=area
def area(r):
    ### BEGIN SOLUTION
    return math.pi * r * r
    ### END SOLUTION
# %% tests id=test_area points=3
assert area(0) == 0
### BEGIN HIDDEN TESTS
assert abs(area(1) - math.pi) < 1e-12
### END HIDDEN TESTS
'''


def test_parse_script_builds_nbgrader_cells():
    nb = parse_script(EXAMPLE)
    assert nb.cells[0].source == setup_cell()
    kinds = [c.cell_type for c in nb.cells]
    assert kinds == ["code", "markdown", "code", "code", "code"]
    assert nb.cells[1].source == "# Title\ntext"
    answer, test = nb.cells[3].metadata["nbgrader"], nb.cells[4].metadata["nbgrader"]
    assert answer["solution"] and not answer["grade"] and answer["grade_id"] == "area"
    assert test["grade"] and test["locked"] and test["points"] == 3
    assert problems(nb) == []


def test_problems_are_reported():
    nb = parse_script(EXAMPLE.replace("### BEGIN HIDDEN TESTS\n", "").replace("### END HIDDEN TESTS\n", ""))
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells[0].source = "print('not the setup cell')"
    found = "\n".join(problems(nb))
    assert "setup cell" in found and "outputs" in found and "no hidden tests" in found


def test_cell_without_id_is_an_error():
    with pytest.raises(ValueError):
        parse_script("# %% solution\nx = 1\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_lesson_script_builds_the_committed_notebook(script):
    notebook = REPO / "solutions" / script.stem / f"{script.stem}.ipynb"
    built = parse_script(script.read_text())
    committed = nbformat.read(notebook, as_version=4)
    assert [c.source for c in built.cells] == [c.source for c in committed.cells], \
        f"{notebook} differs from {script}: rebuild it with python -m autograder.authoring build"
