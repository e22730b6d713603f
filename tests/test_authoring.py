"""Authoring: percent scripts -> nbgrader notebooks, the rules check, and the release in sync.

``test_notebooks_are_what_release_makes`` is the sync test: for every lesson, the committed
``solutions/`` notebook must be exactly what its script in ``lessons/`` builds, and the committed
``course/`` notebook exactly what nbgrader generates from that source - cell sources *and* nbgrader
metadata (grade ids, points, locked/solution/grade flags, schema version, checksums). Nothing is
written and nbgrader runs in-process, so it belongs to the fast tier.
"""
import shutil

import nbformat
import pytest

from autograder.authoring import parse_script, problems, setup_cell
from autograder.cli import main
from autograder.course import release_path, script_path, source_path
from autograder.release import release, sync_problems
from tests import notebooks as nbt

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
LESSON = "00_example"


# ------------------------------------------------------------------------- the conversion
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
    unhidden = EXAMPLE.replace("### BEGIN HIDDEN TESTS\n", "").replace("### END HIDDEN TESTS\n", "")
    nb = parse_script(unhidden)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells[0].source = "print('not the setup cell')"
    found = "\n".join(problems(nb))
    assert "setup cell" in found and "outputs" in found and "no hidden tests" in found


def test_cell_without_id_is_an_error():
    with pytest.raises(ValueError):
        parse_script("# %% solution\nx = 1\n")


# ------------------------------------------------------------------- the repository's lessons
@pytest.mark.parametrize("lesson", nbt.lesson_ids())
def test_notebooks_are_what_release_makes(lesson):
    assert nbt.script_path(lesson).is_file(), f"{lesson} has no script lessons/{lesson}/{lesson}.py"
    found = sync_problems(nbt.REPO, lesson)
    assert not found, "\n".join(found)


# -------------------------------------------------------- the sync check, on a small lesson
@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A course with one small lesson, released by the release command (without a gradebook:
    the slow tests in test_pipeline.py release into one and autograde from it)."""
    root = tmp_path_factory.mktemp("authoring") / "course"
    script_path(root, LESSON).parent.mkdir(parents=True)
    script_path(root, LESSON).write_text(EXAMPLE)
    release(root, gradebook=False)
    return root


@pytest.fixture()
def course(released, tmp_path):
    root = tmp_path / "course"
    shutil.copytree(released, root)
    return root


def _edit_script(root, old, new):
    path = script_path(root, LESSON)
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def _edit_notebook(path, edit):
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


def test_release_writes_both_notebooks_and_is_in_sync(released):
    assert sync_problems(released, LESSON) == []
    source = nbformat.read(source_path(released, LESSON), as_version=4)
    student = nbformat.read(release_path(released, LESSON), as_version=4)
    assert "raise NotImplementedError()" in student.cells[3].source
    assert "HIDDEN" not in student.cells[4].source
    points = [nb.cells[4].metadata["nbgrader"]["points"] for nb in (source, student)]
    assert points == [3, 3]


def test_rebuilding_is_byte_identical(course):
    paths = (source_path(course, LESSON), release_path(course, LESSON))
    before = {p: p.read_bytes() for p in paths}
    release(course, [LESSON], gradebook=False)
    assert {p: p.read_bytes() for p in before} == before


def test_changed_points_that_were_never_rebuilt(course):
    _edit_script(course, "id=test_area points=3", "id=test_area points=5")
    (message,) = sync_problems(course, LESSON)
    assert message.startswith(f"{LESSON}: solutions/{LESSON}/{LESSON}.ipynb is not what "
                              f"lessons/{LESSON}/{LESSON}.py makes")
    assert "cell 4 (grade id 'test_area'): nbgrader points is 3, expected 5" in message
    assert f"`python -m autograder release {LESSON}`" in message
    # rebuilding only the source notebook leaves the student notebook behind: also reported
    assert main(["--root", str(course), "build", LESSON]) == 0
    (message,) = sync_problems(course, LESSON)
    assert (f"course/{LESSON}/{LESSON}.ipynb is not what "
            f"solutions/{LESSON}/{LESSON}.ipynb makes") in message
    assert "nbgrader points is 3, expected 5" in message and "nbgrader checksum" in message
    release(course, [LESSON], gradebook=False)
    assert sync_problems(course, LESSON) == []


def test_changed_grade_id(course):
    _edit_script(course, "id=test_area", "id=test_circle_area")
    (message,) = sync_problems(course, LESSON)
    assert "nbgrader grade_id is 'test_area', expected 'test_circle_area'" in message


def test_hand_edited_flags_in_the_source_notebook(course):
    def unlock(nb):
        nb.cells[4].metadata["nbgrader"]["locked"] = False
    _edit_notebook(source_path(course, LESSON), unlock)
    script_step, release_step = sync_problems(course, LESSON)
    assert "cell 4 (grade id 'test_area'): nbgrader locked is False, expected True" in script_step
    assert f"course/{LESSON}" in release_step
    assert "nbgrader locked is True, expected False" in release_step


def test_an_old_schema_in_the_source_notebook(course):
    def downgrade(nb):
        nb.cells[3].metadata["nbgrader"]["schema_version"] = 2
    _edit_notebook(source_path(course, LESSON), downgrade)
    script_step, release_step = sync_problems(course, LESSON)
    assert "cell 3 (grade id 'area'): nbgrader schema_version is 2, expected 3" in script_step
    assert release_step.startswith(f"{LESSON}: nbgrader could not generate {LESSON}: ")
    assert "old version" in release_step and "\n" not in release_step
    assert f"`python -m autograder release {LESSON}`" in release_step


def test_hand_edited_student_notebook(course):
    def edit(nb):
        nb.cells[3].source = nb.cells[3].source.replace("raise NotImplementedError()", "return 0")
        nb.cells[4].metadata["nbgrader"]["grade"] = False
    _edit_notebook(release_path(course, LESSON), edit)
    (message,) = sync_problems(course, LESSON)
    assert "cell 3 (grade id 'area'): source line" in message
    assert "cell 4 (grade id 'test_area'): nbgrader grade is False, expected True" in message


def test_changed_source_text_and_missing_release(course):
    _edit_script(course, "# text", "# more text")
    release_path(course, LESSON).unlink()
    script_step, release_step = sync_problems(course, LESSON)
    assert ("cell 1 (markdown: '# Title'): "
            "source line 2: committed 'text', expected 'more text'") in script_step
    assert release_step == f"{LESSON}: course/{LESSON}/{LESSON}.ipynb is missing; " \
                           f"run `python -m autograder release {LESSON}`"


def test_cli_release_check_and_check(course, capsys):
    assert main(["--root", str(course), "release", "--check"]) == 0
    assert "all 1 lessons are up to date" in capsys.readouterr().out
    _edit_script(course, "points=3", "points=4")
    assert main(["--root", str(course), "release", "--check", "00"]) == 1
    assert "1 of 1 lessons out of date" in capsys.readouterr().out
    _edit_script(course, "### BEGIN HIDDEN TESTS\n", "")
    assert main(["check", "--root", str(course)]) == 1
    out = capsys.readouterr().out
    assert f"{LESSON}: cell 4 (test_area) has no hidden tests" in out
    assert "points is 3, expected 4" in out
    assert main(["--root", str(course), "check", str(release_path(course, LESSON))]) == 1  # stubs
    assert main(["--root", str(course), "check", str(source_path(course, LESSON))]) == 0


def test_build_a_draft_script(tmp_path, capsys):
    script, out = tmp_path / "draft.py", tmp_path / "out" / "draft.ipynb"
    script.write_text(EXAMPLE)
    assert main(["build", str(script), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and problems(nbformat.read(out, as_version=4)) == []
    assert main(["build", str(script)]) == 2
    assert "--out" in capsys.readouterr().err
