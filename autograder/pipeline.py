"""The instructor's pipeline: release, collect a submission, autograde, score table, feedback.

Release and feedback are the real nbgrader command line (what an instructor would type), run
from the repository so nbgrader picks up the course configuration. Autograding is the course's
own sandboxed grader (``autograder.grading``), which records into nbgrader's gradebook.
``root`` is the course root nbgrader works in (``autograder.course.course_root()`` when not
given): the repository itself, or a scratch copy in tests.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .course import (
    ENV_VAR,
    REPOSITORY,
    CourseError,
    assignments,
    course_root,
    release_path,
    source_path,
)

REPO = REPOSITORY  # where nbgrader_config.py is; the course root may be elsewhere (course_root)
SOLUTION_BLOCK = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
__all__ = ["REPO", "assignments", "nbgrader", "release", "solved_release", "submit", "autograde",
           "feedback", "scores", "format_table", "kernel_flags", "NbgraderError"]


class NbgraderError(RuntimeError):
    """An nbgrader command failed; ``log`` holds what it printed."""

    def __init__(self, args: tuple[str, ...], log: str):
        super().__init__(f"nbgrader {' '.join(args)} failed")
        self.log = log


def nbgrader(*args: str, root: Path | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` for the course at ``root``; raise with its log when it fails."""
    # nbgrader runs helper programs (alembic, for the gradebook) found on PATH: use this venv's.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, **{ENV_VAR: str(course_root(root))})
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=REPOSITORY, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NbgraderError(args, f"{result.stdout}\n{result.stderr}".strip())
    return result


# ------------------------------------------------------------------------------- release
def release(root: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """script -> source notebook -> student notebook for every lesson (or ``only``): see
    ``autograder.release``."""
    from .release import release as build_and_release

    return build_and_release(root, only)


# --------------------------------------------------------------------------- submissions
def answer_code(solution_source: str) -> str:
    """What a student who solved the exercise would have typed: the solution without markers."""
    return "\n".join(line for line in solution_source.splitlines()
                     if not SOLUTION_BLOCK.match(line)).strip("\n")


def solved_release(assignment: str, root: Path | None = None) -> nbformat.NotebookNode:
    """The released notebook with every answer cell filled in from the solutions."""
    root = course_root(root)
    released = nbformat.read(release_path(root, assignment), as_version=4)
    solution = nbformat.read(source_path(root, assignment), as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answer_code(answers[grade_id])
    return released


def submit(student: str, assignment: str, notebook: nbformat.NotebookNode,
           root: Path | None = None) -> Path:
    """Place a notebook where ``nbgrader collect`` would: submitted/<student>/<assignment>/."""
    folder = course_root(root) / "submitted" / student / assignment
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(notebook, path)
    return path


def autograde(student: str, assignment: str, root: Path | None = None):
    """Autograde one submission into the gradebook and return its result: the student's code
    runs in the sandbox, the tests outside it (``autograder.grading``). Errors in the student's
    cells are graded, not raised: a failing cell costs its own exercises only."""
    from .grading.grader import grade_one, record

    root = course_root(root)
    result = grade_one(root, student, assignment)
    record(root, student, [result])
    return result


def ipc_socket_base() -> str:
    """A fresh, short path prefix for one kernel's unix sockets (their paths are length-limited)."""
    import tempfile
    return os.path.join(tempfile.mkdtemp(prefix="ilk-"), "k")


def kernel_flags() -> list[str]:
    """On POSIX, kernels talk over unix sockets: TCP ports chosen by kernels started at the same
    time by other processes can collide and leave a grader waiting on the wrong kernel."""
    if os.name != "posix":
        return []
    return ["--KernelManager.transport=ipc", f"--KernelManager.ip={ipc_socket_base()}"]


def feedback(student: str, assignment: str,
             root: Path | None = None) -> subprocess.CompletedProcess:
    return nbgrader("generate_feedback", assignment, "--student", student, "--force",
                    root=root, check=False)


# ------------------------------------------------------------------------------- scores
@dataclass
class Score:
    assignment: str
    exercise: str          # the graded test cell's id, or "-" for a missing submission
    score: float | None
    max_score: float
    status: str            # "graded", "missing" or "not graded"


def scores(student: str, root: Path | None = None) -> list[Score]:
    """Per-exercise scores of ``student`` from the gradebook, with missing work reported."""
    from nbgrader.api import Gradebook, MissingEntry

    root = course_root(root)
    if not (root / "gradebook.db").is_file():  # opening a missing gradebook would create one
        raise CourseError(f"no gradebook at {root / 'gradebook.db'}: "
                          "nothing has been autograded yet")
    rows: list[Score] = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for assignment in assignments(root):
            try:
                submission = gradebook.find_submission(assignment, student)
            except MissingEntry:
                rows.append(Score(assignment, "-", None, 0.0, "missing"))
                continue
            for notebook in submission.notebooks:
                for grade in sorted(notebook.grades, key=lambda g: g.name):
                    if grade.max_score == 0:
                        continue
                    status = "graded" if grade.score is not None else "not graded"
                    rows.append(Score(assignment, grade.name, grade.score, grade.max_score, status))
    return rows


def format_table(rows: list[Score]) -> str:
    """A plain-text score table: one line per exercise, a subtotal per notebook, a total."""
    lines = [f"{'notebook':<28} {'exercise':<28} {'score':>11}", "-" * 69]
    total = maximum = 0.0
    for assignment in dict.fromkeys(r.assignment for r in rows):
        mine = [r for r in rows if r.assignment == assignment]
        if mine[0].status == "missing":
            lines.append(f"{assignment:<28} {'(no submission)':<28} {'MISSING':>11}")
            continue
        got = sum(r.score or 0 for r in mine)
        out_of = sum(r.max_score for r in mine)
        total, maximum = total + got, maximum + out_of
        for r in mine:
            got_here = "-" if r.score is None else f"{r.score:g}"
            shown = f"{got_here} / {r.max_score:g}"
            lines.append(f"{assignment:<28} {r.exercise:<28} {shown:>11}")
        lines.append(f"{'':<28} {'notebook total':<28} {f'{got:g} / {out_of:g}':>11}")
    lines.append("-" * 69)
    lines.append(f"{'TOTAL':<57} {f'{total:g} / {maximum:g}':>11}")
    return "\n".join(lines)
