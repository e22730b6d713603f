"""The grading queue: submissions wait in the database; worker processes grade them.

The web process only stores the uploaded notebook and a ``queued`` row. This queue's thread hands
queued rows to a pool of worker processes (or Ray tasks when a Ray address is configured); each
worker runs the course's sandboxed grader (``autograder.grading``: the student's code runs in
bubblewrap, the trusted tests in the worker). Student code therefore never runs in the web process.

Nothing is lost: the state lives in the database, so rows that were ``grading`` when the service
stopped are queued again at the next start; a worker that dies is replaced and its submission
retried, and after three crashes the submission is marked ``error`` with the reason.
"""
from __future__ import annotations

import json
import multiprocessing
import threading
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from sqlalchemy import select, update

from .models import Submission, utcnow

MAX_ATTEMPTS = 3


def grade_upload(course_root: str, lesson: str, path: str) -> dict:
    """Run in a worker: grade one uploaded notebook; the report as plain data."""
    from autograder.grading.grader import grade_notebook

    report = grade_notebook(Path(course_root), lesson, Path(path)).to_dict()
    report.pop("sources", None)
    report["output"] = report.get("output", "")[-4000:]
    return report


class _RayPool:
    """The same ``submit`` as a process pool, on a Ray cluster."""

    def __init__(self, address: str, workers: int):
        import ray

        from ..course import REPOSITORY
        if not ray.is_initialized():
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, num_cpus=workers if address == "local" else None,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPOSITORY)}})
        self.task = ray.remote(max_retries=1)(grade_upload)

    def submit(self, fn, *args) -> Future:
        return self.task.remote(*args).future()

    def shutdown(self, wait=True, cancel_futures=False):
        pass


class GradingQueue:
    def __init__(self, database, course_root: Path, uploads: Path, workers: int = 2,
                 ray_address: str | None = None, on_graded=None, log=print):
        self.db, self.course_root, self.uploads = database, Path(course_root), Path(uploads)
        self.workers, self.ray_address = max(1, workers), ray_address
        self.on_graded, self.log = on_graded, log
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.in_flight: dict[int, Future] = {}
        self.lock = threading.Lock()
        self.pool = None
        self.pools: list = []
        self.thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- control
    def start(self) -> None:
        with self.db.session() as s:   # what was being graded when the service stopped
            s.execute(update(Submission).where(Submission.status == "grading")
                      .values(status="queued"))
        self.pool = self._new_pool()
        self.thread = threading.Thread(target=self._run, name="grading-queue", daemon=True)
        self.thread.start()

    def notify(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread:
            self.thread.join(timeout=10)
        with self.lock:
            pools, self.pools = self.pools, []
        for pool in pools:   # the dispatch thread has stopped: no pool starts another worker
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:     # a submission in flight is graded again at the next start
                if worker.is_alive():
                    worker.terminate()

    def _replace_pool(self) -> None:
        """A worker died: grade on with a new pool - unless the queue is stopping (a stop signal
        reaches the workers too), where the new pool's workers would outlive the service."""
        with self.lock:
            if not self.stopping.is_set():
                self.pool = self._new_pool()

    def _new_pool(self):
        if self.ray_address:
            pool = _RayPool(self.ray_address, self.workers)
        else:
            spawn = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(self.workers, mp_context=spawn)
        self.pools.append(pool)      # every pool this queue started, for stop()
        return pool

    # -------------------------------------------------------------------------------- loop
    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._dispatch()
            except Exception:  # noqa: BLE001 - the queue must outlive any one bad row
                self.log("grading queue: " + traceback.format_exc())
            self.wake.wait(timeout=2.0)
            self.wake.clear()

    def _dispatch(self) -> None:
        with self.lock:
            free = self.workers * 2 - len(self.in_flight)   # keep every worker busy
        if free <= 0:
            return
        with self.db.session() as s:
            rows = s.scalars(select(Submission).where(Submission.status == "queued")
                             .order_by(Submission.id).limit(free)).all()
            for row in rows:
                row.status, row.started_at = "grading", utcnow()
                row.attempts += 1
            jobs = [(row.id, row.lesson) for row in rows]
        for sid, lesson in jobs:
            path = str(self.uploads / f"{sid}.ipynb")
            try:
                future = self.pool.submit(grade_upload, str(self.course_root), lesson, path)
            except (BrokenProcessPool, RuntimeError):
                self._requeue(sid, "the grading pool stopped")
                self._replace_pool()
                continue
            with self.lock:
                self.in_flight[sid] = future
            future.add_done_callback(lambda f, sid=sid: self._finished(sid, f))

    def _finished(self, sid: int, future: Future) -> None:
        with self.lock:
            self.in_flight.pop(sid, None)
        try:
            report = future.result()
        except BrokenProcessPool:
            self._requeue(sid, "a grading worker died")
            self._replace_pool()
            self.wake.set()
            return
        except Exception as exc:  # noqa: BLE001 - reported on the submission
            why = f"grader error, tell the course staff: {type(exc).__name__}: {exc}"
            report = {"error": why[:500], "tests": []}
        self._record(sid, report)
        self.wake.set()

    def _requeue(self, sid: int, why: str) -> None:
        with self.db.session() as s:
            row = s.get(Submission, sid)
            if row.attempts >= MAX_ATTEMPTS:
                row.status, row.graded_at = "error", utcnow()
                row.report = json.dumps({"error": f"{why} on every attempt", "tests": []})
            else:
                row.status = "queued"
        self.log(f"grading queue: submission {sid}: {why}")

    def _record(self, sid: int, report: dict) -> None:
        tests = report.get("tests", [])
        with self.db.session() as s:
            row = s.get(Submission, sid)
            row.report = json.dumps(report)
            row.score = sum(t["score"] for t in tests)
            row.max_score = sum(t["points"] for t in tests)
            row.status = "graded" if tests else "error"   # unreadable files are graded 0
            row.graded_at = utcnow()
            student_id = row.student_id
        if self.on_graded:
            try:
                self.on_graded(student_id)
            except Exception:  # noqa: BLE001 - a certificate problem never loses the grade
                self.log("after grading: " + traceback.format_exc())
