"""The course service's grading queue on a Ray cluster (``serve --ray ADDRESS``; "local" starts a
one-machine cluster): a queued submission is graded by a Ray task running the sandboxed grader,
and the result lands in the database exactly as with the local worker processes."""
from __future__ import annotations

import json
import shutil
import threading

import pytest

from autograder.course import REPOSITORY, release_path, source_path
from autograder.service.db import Database
from autograder.service.grading_queue import GradingQueue
from autograder.service.models import Student, Submission, utcnow

pytestmark = pytest.mark.slow
LESSON = "00_why_inference_is_slow"


def test_a_submission_is_graded_by_a_ray_task(tmp_path):
    ray = pytest.importorskip("ray")
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    database.migrate()
    uploads = tmp_path / "submissions"
    uploads.mkdir()
    with database.session() as s:
        student = Student(name="Grace Hopper", email="grace@example.org", created_at=utcnow(),
                          confirmed_at=utcnow(), is_admin=False)
        s.add(student)
        s.flush()
        for sid, path in ((1, source_path(REPOSITORY, LESSON)),
                          (2, release_path(REPOSITORY, LESSON))):   # a solution, an empty stub
            shutil.copy(path, uploads / f"{sid}.ipynb")
            s.add(Submission(id=sid, student_id=student.id, lesson=LESSON, filename="x.ipynb",
                             sha256="-", size=1, status="queued", submitted_at=utcnow(),
                             attempts=0))
    graded = []
    done = threading.Event()

    def on_graded(student_id):
        graded.append(student_id)
        if len(graded) == 2:
            done.set()

    queue = GradingQueue(database, REPOSITORY, uploads, workers=1, ray_address="local",
                         on_graded=on_graded)
    try:
        queue.start()
        assert done.wait(300), "the Ray task did not grade both submissions"
    finally:
        queue.stop()
        ray.shutdown()
    with database.session() as s:
        solution, stub = s.get(Submission, 1), s.get(Submission, 2)
        assert (solution.status, stub.status) == ("graded", "graded")
        assert solution.max_score == stub.max_score > 0
        assert solution.score == solution.max_score and stub.score == 0
        statuses = {t["status"] for t in json.loads(stub.report)["tests"]}
        assert statuses and "passed" not in statuses
