"""Every lesson through the sandboxed grader: the solutions earn every point, the released stubs
none, and every wrong answer of lessons/NN/mutants.py loses points - with the student's code in
the sandbox and the tests in the trusted checker, as for a real submission."""
from __future__ import annotations

import shutil

import nbformat
import pytest

from autograder import pipeline
from autograder.grading import grader
from autograder.grading.sandbox import bwrap_path
from tests import notebooks as nbt

LESSONS = nbt.lesson_ids()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    bwrap_path()  # a clear error when bubblewrap is missing
    root = tmp_path_factory.mktemp("graded") / "course"
    for part in ("lessons", "solutions", "course"):
        shutil.copytree(nbt.REPO / part, root / part)
    return root


def _submit_and_grade(root, student, lesson, nb):
    pipeline.submit(student, lesson, nb, root)
    return grader.grade_one(root, student, lesson)


def _with_answer(root, lesson, grade_id, code):
    nb = pipeline.solved_release(lesson, root)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = code
    return nb


@pytest.mark.parametrize("lesson", LESSONS)
def test_solutions_earn_every_point_and_stubs_none(course, lesson):
    solved = _submit_and_grade(course, "solver", lesson, pipeline.solved_release(lesson, course))
    assert solved.max_score > 0 and solved.score == solved.max_score, [
        (t.grade_id, t.status, t.message) for t in solved.tests]
    assert not solved.notes, solved.notes
    stubs = _submit_and_grade(course, "stubs", lesson,
                              nbformat.read(nbt.release_path(lesson), as_version=4))
    assert stubs.score == 0, [(t.grade_id, t.status) for t in stubs.tests if t.score]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", [lesson for lesson in LESSONS if nbt.mutants_of(lesson)[0]])
def test_every_wrong_answer_loses_points_in_the_sandbox(course, lesson):
    mutants, _ = nbt.mutants_of(lesson)
    for grade_id, wrong_answers in mutants.items():
        for number, wrong in enumerate(wrong_answers):
            nb = _with_answer(course, lesson, grade_id, wrong)
            result = _submit_and_grade(course, f"wrong-{grade_id}-{number}", lesson, nb)
            assert result.score < result.max_score, f"{lesson} {grade_id} mutant {number}"
