"""Grading a class: the same grades serially, in local worker processes and on Ray; a worker that
crashes loses nobody; the grader alone writes the gradebook."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from autograder import pipeline
from autograder.grading import grader
from tests import notebooks as nbt

LESSON = "12_knowledge_check"


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """Four students of lesson 12: two right, one half right, one who submitted a broken file."""
    root = tmp_path_factory.mktemp("class") / "course"
    for part in ("solutions", "course"):
        shutil.copytree(nbt.REPO / part / LESSON, root / part / LESSON)
    solved = pipeline.solved_release(LESSON, root)
    pipeline.submit("ann", LESSON, solved, root)
    pipeline.submit("ben", LESSON, solved, root)
    half = pipeline.solved_release(LESSON, root)
    for cell in half.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in ("answer_q1", "answer_q2"):
            cell.source = cell.source.split("=")[0] + '= "Z"'
    pipeline.submit("cat", LESSON, half, root)
    broken = root / "submitted" / "dan" / LESSON
    broken.mkdir(parents=True)
    (broken / f"{LESSON}.ipynb").write_text("{ this is not a notebook")
    return root


def _totals(results: dict) -> dict:
    return {student: sum(r.score for r in rows) for student, rows in results.items()}


EXPECTED = {"ann": 5.0, "ben": 5.0, "cat": 3.0, "dan": 0.0}


def test_serial_and_parallel_grading_agree(klass):
    students = grader.students_of(klass)
    serial = grader.grade_class(klass, students, [LESSON], workers=1, log=lambda _: None)
    parallel = grader.grade_class(klass, students, [LESSON], workers=2, log=lambda _: None)
    assert _totals(serial) == _totals(parallel) == EXPECTED
    rows = {r.exercise: r.score for r in pipeline.scores("cat", klass)}
    assert rows == {"check_q1": 0, "check_q2": 0, "check_q3": 1, "check_q4": 1, "check_q5": 1}
    dan = parallel["dan"][0]
    assert {t.status for t in dan.tests} == {"unreadable"} and "not" in dan.error


def crash_once_per_student(root, student, lessons, settings):
    """A worker task that dies the first time it sees a student (a marker file remembers)."""
    marker = Path(root) / f".crashed-{student}"
    if student in ("ben", "cat") and not marker.exists():
        marker.write_text("")
        os._exit(1)
    return grader._grade_and_return(root, student, lessons, settings)


def always_crash_for_ben(root, student, lessons, settings):
    if student == "ben":
        os._exit(1)
    return grader._grade_and_return(root, student, lessons, settings)


@pytest.mark.slow
def test_a_crashed_worker_loses_no_student(klass):
    lines = []
    results = grader.grade_class(klass, grader.students_of(klass), [LESSON], workers=2,
                                 log=lines.append, task=crash_once_per_student)
    assert _totals(results) == EXPECTED
    assert any("a worker crashed" in line for line in lines)


@pytest.mark.slow
def test_a_student_who_always_crashes_the_worker_is_reported_alone(klass):
    lines = []
    results = grader.grade_class(klass, grader.students_of(klass), [LESSON], workers=2,
                                 log=lines.append, task=always_crash_for_ben, retries=1)
    assert _totals(results) == dict(EXPECTED, ben=0.0)
    assert {t.status for t in results["ben"][0].tests} == {"crashed"}
    assert any("ben: the worker crashed 2 times" in line for line in lines)


@pytest.mark.slow
def test_ray_grades_like_the_local_workers(klass):
    ray = pytest.importorskip("ray")
    try:
        results = grader.grade_class(klass, grader.students_of(klass), [LESSON],
                                     ray_address="local", log=lambda _: None)
    finally:
        ray.shutdown()
    assert _totals(results) == EXPECTED


def grader_error_for_cat(root, student, lessons, settings):
    if student == "cat":
        raise ValueError("a grader bug")
    return grader._grade_and_return(root, student, lessons, settings)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_grader_error_on_one_student_never_stops_the_class(klass, workers):
    lines = []
    results = grader.grade_class(klass, grader.students_of(klass), [LESSON], workers=workers,
                                 log=lines.append, task=grader_error_for_cat)
    assert _totals(results) == dict(EXPECTED, cat=0.0)
    assert {t.status for t in results["cat"][0].tests} == {"error"}
    assert "a grader bug" in results["cat"][0].tests[0].message
