"""Grade students: find each submitted notebook, re-attach its answers, check them, record grades.

    grade_student(root, student, lessons)   -> [LessonResult]   (runs anywhere: here, a worker
                                                                 process, a Ray task)
    record(root, student, results)          the one writer: gradebook.db, the autograded
                                            notebooks (what nbgrader's feedback and export read)
                                            and autograded/<student>/<lesson>/grading.json
    grade_class(root, students, workers=, ray_address=)   many students in parallel

Every zero says why: the test's own failure message, a timeout, a crash, a sandbox limit, a
reference implementation used, an answer cell not found, an unreadable file.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nbformat

from ..course import (
    REPOSITORY,
    CourseError,
    mutants_path,
    release_path,
    source_path,
)
from .checker import LessonResult, TestResult, grade_lesson
from .plan import Plan, build_plan
from .redact import redacted_copy, references
from .sandbox import Limits, check_available, scratch_runtime
from .submission import SubmissionError, find_notebook, read_answers


@dataclass(frozen=True)
class Settings:
    """How to grade (passed to worker processes and Ray tasks as data)."""
    limits: Limits = Limits()


# -------------------------------------------------------------------- per-process caches
@lru_cache(maxsize=None)
def _plan(root: str, lesson: str) -> Plan:
    return build_plan(lesson, nbformat.read(source_path(Path(root), lesson), as_version=4))


@lru_cache(maxsize=None)
def _release(root: str, lesson: str) -> nbformat.NotebookNode:
    return nbformat.read(release_path(Path(root), lesson), as_version=4)


@lru_cache(maxsize=None)
def _references(root: str, lesson: str) -> tuple[str, ...]:
    """The lesson's reference implementations; their renamed twins are listed beside the lesson
    script (the course's, else this repository's: a course folder may hold only notebooks)."""
    mutants = mutants_path(Path(root), lesson)
    if not mutants.is_file():
        mutants = mutants_path(REPOSITORY, lesson)
    refs = references(_plan(root, lesson), mutants)
    return tuple(sorted({name for names in refs.values() for name in names}))


@lru_cache(maxsize=None)
def _package(root: str, lesson: str) -> Path:
    return redacted_copy(list(_references(root, lesson)))


@lru_cache(maxsize=None)
def _runtime() -> Path:
    return scratch_runtime()


def _shared() -> list[Path]:
    """Read-only folders the student's code may read: the embedded model's cache."""
    from inferlab.lab.settings import cache_dir
    return [cache_dir()]


# ------------------------------------------------------------------------------ grading
def missing_result(root: Path, lesson: str, status: str, message: str) -> LessonResult:
    """Every test of the lesson scored zero for one reason (an unreadable or missing file)."""
    tests = [TestResult(s.grade_id, s.points, 0.0, status, message)
             for s in _plan(str(root), lesson).tests]
    return LessonResult(lesson, tests=tests, error=message)


def grade_one(root: Path, student: str, lesson: str,
              settings: Settings = Settings()) -> LessonResult:
    folder = Path(root) / "submitted" / student / lesson
    try:
        path, notes = find_notebook(folder, lesson)
    except SubmissionError as error:
        return missing_result(root, lesson, "unreadable", str(error))
    result = grade_notebook(root, lesson, path, settings, notes)
    if not result.error:
        result.timestamp = submitted_at(folder, path)
    return result


def grade_notebook(root: Path, lesson: str, path: Path, settings: Settings = Settings(),
                   notes: list[str] | None = None) -> LessonResult:
    """Grade one notebook file as ``lesson`` (a submission folder, or a course service's upload)."""
    start = time.perf_counter()
    try:
        answers = read_answers(path, _release(str(root), lesson))
    except SubmissionError as error:
        result = missing_result(root, lesson, "unreadable", str(error))
        result.seconds = time.perf_counter() - start
        return result
    result = grade_lesson(_plan(str(root), lesson), answers.sources,
                          _package(str(root), lesson), _runtime(), _shared(),
                          settings.limits, notes=list(notes or []) + answers.notes,
                          references=_references(str(root), lesson))
    result.file, result.sources = Path(path).name, answers.sources
    return result


def submitted_at(folder: Path, notebook: Path) -> str:
    """nbgrader collect's timestamp.txt when there is one, else the notebook's modification time
    (ISO 8601, UTC); nbgrader's late-submission penalty reads it from the gradebook."""
    from datetime import datetime, timezone

    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        text = stamp.read_text(errors="replace").strip()[:64]
        try:
            return datetime.fromisoformat(text.replace(" UTC", "+00:00")).isoformat()
        except ValueError:
            pass
    return datetime.fromtimestamp(notebook.stat().st_mtime, timezone.utc).isoformat()


def grade_student(root: Path, student: str, lessons: list[str],
                  settings: Settings = Settings()) -> list[LessonResult]:
    """Grade the lessons ``student`` submitted (a folder under submitted/<student>/)."""
    root = Path(root)
    results = []
    for lesson in lessons:
        if not (root / "submitted" / student / lesson).is_dir():
            continue
        results.append(grade_one(root, student, lesson, settings))
    return results


# ------------------------------------------------------------------------------ recording
def record(root: Path, student: str, results: list[LessonResult]) -> None:
    """Write the grades (the only place that writes the gradebook)."""
    from nbgrader.api import Gradebook

    root = Path(root)
    # A new gradebook is set up by nbgrader's migrations tool (alembic), looked up on PATH.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook, warnings.catch_warnings():
        # nbgrader's own models make SQLAlchemy warn about autoflush while a submission is made
        warnings.filterwarnings("ignore", message=".*not in session.*")
        gradebook.update_or_create_student(student)
        for result in results:
            lesson = result.lesson
            _register(gradebook, root, lesson)
            extra = {}
            if result.timestamp:
                from datetime import datetime
                extra["timestamp"] = datetime.fromisoformat(result.timestamp)
            gradebook.update_or_create_submission(lesson, student, **extra)
            for test in result.tests:
                grade = gradebook.find_grade(test.grade_id, lesson, lesson, student)
                grade.auto_score = test.score
                grade.needs_manual_grade = False
            gradebook.db.commit()
            _write_autograded(root, student, result)


def _register(gradebook, root: Path, lesson: str) -> None:
    """The lesson's notebook, graded cells and locked cells in the gradebook (as nbgrader's
    generate_assignment would record them)."""
    released = _release(str(root), lesson)
    gradebook.update_or_create_assignment(lesson)
    gradebook.update_or_create_notebook(lesson, lesson)
    for cell in released.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade_id"):
            continue
        grade_id = meta["grade_id"]
        if meta.get("grade"):
            gradebook.update_or_create_grade_cell(grade_id, lesson, lesson,
                                                  max_score=float(meta.get("points", 0)),
                                                  cell_type=cell.cell_type)
        if meta.get("solution"):
            gradebook.update_or_create_solution_cell(grade_id, lesson, lesson)
        gradebook.update_or_create_source_cell(
            grade_id, lesson, lesson, cell_type=cell.cell_type,
            locked=bool(meta.get("locked")), source=cell.source, checksum=meta.get("checksum"))


def _write_autograded(root: Path, student: str, result: LessonResult) -> None:
    """autograded/<student>/<lesson>/: the release with the student's answers and each test's
    verdict as its output (nbgrader's feedback reads it), and grading.json, the full report."""
    folder = root / "autograded" / student / result.lesson
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    nb = nbformat.from_dict(json.loads(json.dumps(_release(str(root), result.lesson))))
    sources = result.sources
    verdicts = {t.grade_id: t for t in result.tests}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("solution") and grade_id in sources:
            cell.source = sources[grade_id]
        if meta.get("grade") and grade_id in verdicts and cell.cell_type == "code":
            cell.outputs = [_output(verdicts[grade_id])]
    nbformat.write(nb, folder / f"{result.lesson}.ipynb")
    report = result.to_dict()
    (folder / "grading.json").write_text(json.dumps(report, indent=1) + "\n")


def _output(test: TestResult):
    if test.status == "passed":
        text = test.details or f"passed: {test.score:g} / {test.points:g}\n"
        return nbformat.v4.new_output("stream", name="stdout", text=text)
    return nbformat.v4.new_output("error", ename=test.status, evalue=test.message,
                                  traceback=[test.message, test.details])


# ------------------------------------------------------------------------------ a class
def _grade_and_return(root: str, student: str, lessons: list[str], settings: Settings):
    """What a worker sends back: plain dictionaries."""
    return [r.to_dict() for r in grade_student(Path(root), student, lessons, settings)]


def _from_dicts(dicts) -> list[LessonResult]:
    return [LessonResult.from_dict(dict(data)) for data in dicts]


def grade_class(root: Path, students: list[str], lessons: list[str], workers: int = 1,
                ray_address: str | None = None, settings: Settings = Settings(),
                log=print, retries: int = 2, task=None) -> dict[str, list[LessonResult]]:
    """Grade many students in parallel; this process alone writes the gradebook.

    ``workers`` local processes, or tasks on the Ray cluster at ``ray_address`` ("local" starts
    one on this machine). A student whose worker crashed is graded again (``retries`` times);
    one who still fails is reported, never silently dropped. ``task`` replaces the function a
    worker runs (tests inject crashes with it)."""
    check_available()
    root = Path(root)
    task = task or _grade_and_return
    done: dict[str, list[LessonResult]] = {}

    def finished(student, dicts):
        results = _from_dicts(dicts)
        record(root, student, results)
        done[student] = results
        got = sum(r.score for r in results)
        out_of = sum(r.max_score for r in results)
        log(f"  {student:<24} {len(results):>2} lessons  {got:g} / {out_of:g}")

    if ray_address:
        _grade_on_ray(task, root, students, lessons, ray_address, settings, finished, retries)
    elif workers <= 1:
        for student in students:
            try:
                dicts = task(str(root), student, lessons, settings)
            except Exception as error:  # noqa: BLE001 - one student never stops a class
                dicts = _failed(root, student, lessons, error, log)
            finished(student, dicts)
    else:
        _grade_in_processes(task, root, students, lessons, workers, settings, finished, retries,
                            log)
    return done


def _grade_in_processes(task, root, students, lessons, workers, settings, finished, retries,
                        log):
    """A pool of ``workers`` processes. A worker that dies takes every pending student of its
    pool with it: those are graded again one at a time, each in a fresh process, so a student
    whose grading kills its worker every time is found (and reported) alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")

    def run(batch, size):
        broken = []
        with ProcessPoolExecutor(size, mp_context=context) as pool:
            futures = {pool.submit(task, str(root), s, lessons, settings): s for s in batch}
            for future in as_completed(futures):
                try:
                    dicts = future.result()
                except BrokenProcessPool:
                    broken.append(futures[future])
                    continue
                except Exception as error:  # noqa: BLE001 - one student never stops a class
                    dicts = _failed(root, futures[future], lessons, error, log)
                finished(futures[future], dicts)
        return broken

    for student in run(list(students), workers):
        for attempt in range(1, retries + 1):
            log(f"  {student}: a worker crashed; grading again alone ({attempt}/{retries})")
            if not run([student], 1):
                break
        else:
            log(f"  {student}: the worker crashed {retries + 1} times; recorded as not graded")
            finished(student, [r.to_dict() for r in _crashed(root, student, lessons)])


def _failed(root: Path, student: str, lessons: list[str], error: Exception, log) -> list[dict]:
    """A grader error while grading one student: reported on each lesson, the class goes on."""
    log(f"  {student}: grader error ({type(error).__name__}: {error}); recorded as not graded")
    message = f"grader error, tell the instructor: {type(error).__name__}: {error}"[:400]
    return [missing_result(root, lesson, "error", message).to_dict() for lesson in lessons
            if (Path(root) / "submitted" / student / lesson).is_dir()]


def _crashed(root: Path, student: str, lessons: list[str]) -> list[LessonResult]:
    message = "the grading worker crashed on every attempt: grade this student alone to see why"
    return [missing_result(root, lesson, "crashed", message) for lesson in lessons
            if (Path(root) / "submitted" / student / lesson).is_dir()]


def _grade_on_ray(task, root, students, lessons, address, settings, finished, retries):
    import ray

    from ..course import REPOSITORY

    if not ray.is_initialized():
        # Workers import the grader from this checkout (it is not an installed package).
        kwargs = {"address": None if address == "local" else address,
                  "include_dashboard": False, "log_to_driver": False,
                  "runtime_env": {"env_vars": {"PYTHONPATH": str(REPOSITORY)}}}
        if address == "local":
            kwargs["num_cpus"] = os.cpu_count()
        ray.init(**kwargs)
    remote = ray.remote(max_retries=retries, num_cpus=1)(task)
    pending = {remote.remote(str(root), s, lessons, settings): s for s in students}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        student = pending.pop(ready[0])
        try:
            dicts = ray.get(ready[0])
        except Exception as error:  # noqa: BLE001 - one student never stops a class
            dicts = _failed(root, student, lessons, error, print)
        finished(student, dicts)


def students_of(root: Path) -> list[str]:
    folder = Path(root) / "submitted"
    if not folder.is_dir():
        raise CourseError(f"no submissions: {folder} does not exist")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
