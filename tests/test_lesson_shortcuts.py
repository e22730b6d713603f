"""Shortcut answers the *visible* tests must already reject: ``SHORTCUTS`` in a lesson's
mutants.py (same form as ``MUTANTS``). A student who writes one sees the failure in the notebook,
before submitting - so it cannot be a mutant, which by definition passes the visible tests."""
from __future__ import annotations

import runpy

import pytest

from autograder import course
from autograder.pipeline import answer_code
from tests import notebooks as nbt
from tests.test_notebooks import _run


def _shortcuts(lesson: str) -> dict:
    return runpy.run_path(str(course.mutants_path(nbt.REPO, lesson))).get("SHORTCUTS", {})


LESSONS = [lesson for lesson in nbt.lesson_ids() if _shortcuts(lesson)]


def test_some_lessons_list_shortcuts():
    assert LESSONS


@pytest.mark.parametrize("lesson", LESSONS)
def test_visible_tests_reject_the_shortcuts(lesson):
    nb = nbt.read(nbt.solution_path(lesson))
    answers = {c.metadata["nbgrader"]["grade_id"]: answer_code(c.source)
               for c in nbt.cells(nb, "solution")}
    tests = [c.source for c in nbt.cells(nb, "grade")]
    _, context = nbt.mutants_of(lesson)
    for grade_id, shortcuts in _shortcuts(lesson).items():
        assert grade_id in answers, f"{lesson}: no answer cell {grade_id}"
        for shortcut in shortcuts:
            namespace: dict = {}
            exec(context, namespace)
            for other, code in answers.items():
                exec(shortcut if other == grade_id else code, namespace)
            visible = [_run(nbt.visible_part(source), namespace) for source in tests]
            assert any(visible), \
                f"{lesson}: a shortcut for {grade_id} passes the visible tests:\n{shortcut}"
