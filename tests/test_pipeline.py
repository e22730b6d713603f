"""The instructor's pipeline on a scratch copy of the course: release, submissions, autograde, scores."""
import shutil

import nbformat
import pytest

from autograder import pipeline
from tests import notebooks as nbt

LESSON = "00_why_inference_is_slow"


@pytest.fixture()
def course_root(tmp_path):
    root = tmp_path / "course-root"
    shutil.copytree(pipeline.REPO / "solutions", root / "solutions")
    return root


def _normalised(path):
    nb = nbformat.read(path, as_version=4)
    return nbformat.writes(nb)


@pytest.mark.slow
def test_committed_release_equals_regenerated(course_root):
    pipeline.release(course_root)
    for lesson in pipeline.assignments(course_root):
        regenerated = course_root / "course" / lesson / f"{lesson}.ipynb"
        assert _normalised(regenerated) == _normalised(nbt.release_path(lesson)), \
            f"course/{lesson} is stale: run `make release` and commit it"


def _broken_submission(course_root):
    nb = pipeline.solved_release(LESSON, course_root)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "llama_parameter_count":
            cell.source = "def llama_parameter_count(cfg):\n    return cfg[  # syntax error"
        if grade_id == "monthly_gpu_cost":
            cell.source = "raise RuntimeError('the student broke this cell')"
    return nb


@pytest.mark.slow
def test_autograde_scores_and_missing_work(course_root):
    pipeline.release(course_root, only=[LESSON])
    pipeline.submit("alice", LESSON, pipeline.solved_release(LESSON, course_root), course_root)
    pipeline.submit("bob", LESSON, _broken_submission(course_root), course_root)
    for student in ("alice", "bob"):
        pipeline.autograde(student, LESSON, course_root)

    alice = {r.exercise: r for r in pipeline.scores("alice", course_root) if r.assignment == LESSON}
    assert {k: r.score for k, r in alice.items()} == {
        "test_decode_tokens_per_s_bound": 2, "test_llama_parameter_count": 2, "test_monthly_gpu_cost": 1}

    # A syntax error and a raising cell cost only their own exercises.
    bob = {r.exercise: r.score for r in pipeline.scores("bob", course_root) if r.assignment == LESSON}
    assert bob == {"test_decode_tokens_per_s_bound": 2, "test_llama_parameter_count": 0, "test_monthly_gpu_cost": 0}

    # Lessons without a submission are reported as missing, not as a crash.
    rows = pipeline.scores("alice", course_root)
    missing = {r.assignment for r in rows if r.status == "missing"}
    assert missing == set(pipeline.assignments(course_root)) - {LESSON}
    table = pipeline.format_table(rows)
    assert "MISSING" in table or not missing
    assert "5 / 5" in table

    # Feedback explains the grading to the student.
    pipeline.feedback("bob", LESSON, course_root)
    assert list((course_root / "feedback" / "bob" / LESSON).glob("*.html"))


def test_answer_code_strips_markers():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert pipeline.answer_code(source) == "def f():\n    return 1"
