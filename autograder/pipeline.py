"""The instructor's pipeline: release, collect a submission, autograde, score table, feedback.

Every step is the real nbgrader command line (what an instructor would type), run from the
repository so nbgrader picks up the course configuration. ``root`` is the course root nbgrader
works in: the repository itself, or a scratch copy in tests.
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

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = re.compile(r"^\d\d_[a-z0-9_]+$")
SOLUTION_BLOCK = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def assignments(root: Path = REPO) -> list[str]:
    """Assignment ids = folders of solutions/ named NN_name that hold NN_name.ipynb."""
    source = Path(root) / "solutions"
    return sorted(p.name for p in source.iterdir()
                  if ASSIGNMENT.match(p.name) and (p / f"{p.name}.ipynb").is_file())


def nbgrader(*args: str, root: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` for the course at ``root``; raise with its log when it fails."""
    # nbgrader runs helper programs (alembic, for the gradebook) found on PATH: use this venv's.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, INFERLAB_COURSE_ROOT=str(Path(root).resolve()), PATH=path)
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=REPO, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# ------------------------------------------------------------------------------- release
def release(root: Path = REPO, only: list[str] | None = None) -> list[Path]:
    """Regenerate the student notebooks in course/ from solutions/ (nbgrader generate_assignment)."""
    written = []
    for assignment in only or assignments(root):
        nbgrader("generate_assignment", assignment, "--force", root=root)
        written.append(Path(root) / "course" / assignment / f"{assignment}.ipynb")
    return written


# --------------------------------------------------------------------------- submissions
def answer_code(solution_source: str) -> str:
    """What a student who solved the exercise would have typed: the solution without markers."""
    return "\n".join(line for line in solution_source.splitlines()
                     if not SOLUTION_BLOCK.match(line)).strip("\n")


def solved_release(assignment: str, root: Path = REPO) -> nbformat.NotebookNode:
    """The released notebook with every answer cell filled in from the solutions."""
    released = nbformat.read(Path(root) / "course" / assignment / f"{assignment}.ipynb", as_version=4)
    solution = nbformat.read(Path(root) / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answer_code(answers[grade_id])
    return released


def submit(student: str, assignment: str, notebook: nbformat.NotebookNode,
           root: Path = REPO) -> Path:
    """Place a notebook where ``nbgrader collect`` would: submitted/<student>/<assignment>/."""
    folder = Path(root) / "submitted" / student / assignment
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(notebook, path)
    return path


def autograde(student: str, assignment: str, root: Path = REPO) -> subprocess.CompletedProcess:
    """Autograde one submission into the gradebook (errors in the student's cells are graded,
    not raised: nbgrader records the failing cells and keeps the other points)."""
    return nbgrader("autograde", assignment, "--student", student, "--force", *kernel_flags(),
                    root=root, check=False)


def ipc_socket_base() -> str:
    """A fresh, short path prefix for one kernel's unix sockets (socket paths are length-limited)."""
    import tempfile
    return os.path.join(tempfile.mkdtemp(prefix="ilk-"), "k")


def kernel_flags() -> list[str]:
    """On POSIX, kernels talk over unix sockets: TCP ports chosen by kernels started at the same
    time by other processes can collide and leave a grader waiting on the wrong kernel."""
    if os.name != "posix":
        return []
    return ["--KernelManager.transport=ipc", f"--KernelManager.ip={ipc_socket_base()}"]


def feedback(student: str, assignment: str, root: Path = REPO) -> subprocess.CompletedProcess:
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


def scores(student: str, root: Path = REPO) -> list[Score]:
    """Per-exercise scores of ``student`` from the gradebook, with missing work reported."""
    from nbgrader.api import Gradebook, MissingEntry

    rows: list[Score] = []
    with Gradebook(f"sqlite:///{Path(root) / 'gradebook.db'}") as gradebook:
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
            shown = f"{r.score:g} / {r.max_score:g}" if r.score is not None else f"- / {r.max_score:g}"
            lines.append(f"{assignment:<28} {r.exercise:<28} {shown:>11}")
        lines.append(f"{'':<28} {'notebook total':<28} {f'{got:g} / {out_of:g}':>11}")
    lines.append("-" * 69)
    lines.append(f"{'TOTAL':<57} {f'{total:g} / {maximum:g}':>11}")
    return "\n".join(lines)
