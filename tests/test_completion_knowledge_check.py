"""Notebook 12 graded for real by nbgrader: malformed answers score zero with a message, grading
never stops, feedback explains every answer, and the gradebook then drives the completion rule.

Works on a scratch course root holding only the knowledge check (release, submit, autograde,
generate_feedback - the instructor's real commands, via autograder.pipeline).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import pipeline
from autograder.certificates.progress import student_progress
from autograder.certificates.rule import CompletionRule

LESSON = "12_knowledge_check"
REPO = Path(__file__).resolve().parent.parent
CORRECT_LINE = re.compile(r'^answer_q\d = "[ABCD]"$', re.M)


def _answers(course_root, answers: dict) -> nbformat.NotebookNode:
    """The released notebook with some answer cells filled in (others left as released)."""
    nb = nbformat.read(course_root / "course" / LESSON / f"{LESSON}.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = f"{grade_id} = {answers[grade_id]}"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("kc") / "course-root"
    shutil.copytree(REPO / "solutions" / LESSON, root / "solutions" / LESSON)
    pipeline.release(root, only=[LESSON])
    pipeline.submit("ada", LESSON, pipeline.solved_release(LESSON, root), root)
    pipeline.submit("bob", LESSON, _answers(root, {
        "answer_q1": '" b "',      # correct, lower case with spaces: accepted
        "answer_q2": '"A"',        # wrong letter
        "answer_q3": '"AB"',       # two letters
        "answer_q4": "3",          # wrong type
        # answer_q5 left as released: `answer_q5 = None` then raise NotImplementedError
    }), root)
    for student in ("ada", "bob"):
        pipeline.autograde(student, LESSON, root)
    pipeline.feedback("bob", LESSON, root)
    return root


def _scores(root, student):
    return {r.exercise: r.score for r in pipeline.scores(student, root) if r.assignment == LESSON}


@pytest.mark.slow
def test_release_hides_the_answers(graded):
    released = (graded / "course" / LESSON / f"{LESSON}.ipynb").read_text()
    assert not CORRECT_LINE.search("\n".join(
        c.source for c in nbformat.reads(released, as_version=4).cells))
    assert "the answer is" not in released and "HIDDEN TESTS" not in released
    for package in ("inferlab", "autograder"):
        for path in (REPO / package).rglob("*.py"):
            assert "the answer is B. Quantization" not in path.read_text(), path


@pytest.mark.slow
def test_scores_and_malformed_answers(graded):
    assert _scores(graded, "ada") == {f"check_q{i}": 1 for i in range(1, 6)}
    assert _scores(graded, "bob") == {"check_q1": 1, "check_q2": 0, "check_q3": 0, "check_q4": 0,
                                      "check_q5": 0}


@pytest.mark.slow
def test_feedback_explains_every_answer_and_each_problem(graded):
    html = (graded / "feedback" / "bob" / LESSON / f"{LESSON}.html").read_text()
    text = re.sub(r"<[^>]+>", "", html).replace("&#39;", "'").replace("&quot;", '"')
    for q, letter in zip(range(1, 6), "BDACB"):
        assert f"Question {q} - the answer is {letter}." in text, q
    assert "Question 2: you answered A; the answer is D" in text
    assert "answer_q3 must be one letter" in text and "but it is 'AB'" in text
    assert "answer_q4 must be one letter" in text and "but it is 3" in text
    assert "answer_q5 must be one letter" in text and "but it is None" in text


@pytest.mark.slow
def test_the_knowledge_check_threshold_comes_from_the_gradebook(graded):
    rule = CompletionRule(assignments=(LESSON,))
    assert student_progress(graded, "ada", rule).complete
    bob = student_progress(graded, "bob", rule)
    assert not bob.complete and bob.missing[0].reason == "needs 4 points, has 1"
