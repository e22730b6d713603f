"""Reading a student's progress from the nbgrader gradebook and applying the completion rule.

nbgrader's ``autograde`` records, for every submission, the points of each graded cell; the
``Gradebook`` API sums them per assignment (``score`` / ``max_score``) and flags submissions that
still need a human (``needs_manual_grade``). This module only *reads* the gradebook: nothing here
changes a grade.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .rule import DEFAULT_RULE, CompletionRule

EPS = 1e-9


class GradebookError(RuntimeError):
    """The gradebook is missing or does not know the student."""


@dataclass
class AssignmentStatus:
    name: str
    done: bool
    reason: str
    score: float | None = None
    max_score: float | None = None
    needed: float | None = None


@dataclass
class Progress:
    student: str
    full_name: str
    statuses: list[AssignmentStatus] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.statuses) and all(s.done for s in self.statuses)

    @property
    def missing(self) -> list[AssignmentStatus]:
        return [s for s in self.statuses if not s.done]


def gradebook_path(course_root: Path) -> Path:
    return Path(course_root) / "gradebook.db"


def open_gradebook(course_root: Path):
    """Open the course gradebook read-mostly; a missing file is an error, never a new empty db."""
    from nbgrader.api import Gradebook  # imported lazily: nbgrader is slow to import

    path = gradebook_path(course_root)
    if not path.exists():
        raise GradebookError(f"no gradebook at {path}: nothing has been autograded yet "
                             "(run `python -m autograder demo` or nbgrader autograde)")
    return Gradebook(f"sqlite:///{path}")


def _full_name(student) -> str:
    name = " ".join(p for p in (student.first_name, student.last_name) if p and p.strip())
    return name.strip() or student.id


def _status(gb, assignment: str, student: str, rule: CompletionRule) -> AssignmentStatus:
    from nbgrader.api import MissingEntry

    try:
        gb.find_assignment(assignment)
    except MissingEntry:
        return AssignmentStatus(assignment, False,
                                "not in the gradebook yet (never released/graded)")
    try:
        sub = gb.find_submission(assignment, student)
    except MissingEntry:
        return AssignmentStatus(assignment, False, "no graded submission")
    score, max_score = float(sub.score or 0.0), float(sub.max_score or 0.0)
    needed = rule.needed(assignment, max_score)
    if sub.needs_manual_grade:
        return AssignmentStatus(assignment, False, "waiting for manual grading",
                                score, max_score, needed)
    if max_score <= 0:
        return AssignmentStatus(assignment, True, "submitted (no graded points)",
                                score, max_score, 0.0)
    if score + EPS >= needed:
        return AssignmentStatus(assignment, True, "passed", score, max_score, needed)
    return AssignmentStatus(assignment, False, f"needs {needed:g} points, has {score:g}",
                            score, max_score, needed)


def student_progress(course_root: Path, student: str, rule: CompletionRule = DEFAULT_RULE,
                     gradebook=None) -> Progress:
    """The student's status in every required assignment."""
    from nbgrader.api import MissingEntry

    required = rule.required_assignments(course_root)
    own = gradebook is None
    gb = open_gradebook(course_root) if own else gradebook
    try:
        try:
            record = gb.find_student(student)
        except MissingEntry:
            raise GradebookError(f"student {student!r} is not in the gradebook "
                                 f"({len(gb.students)} students are)") from None
        progress = Progress(student, _full_name(record))
        progress.statuses = [_status(gb, a, student, rule) for a in required]
        return progress
    finally:
        if own:
            gb.close()


def all_progress(course_root: Path, rule: CompletionRule = DEFAULT_RULE) -> list[Progress]:
    """Progress of every student in the gradebook, sorted by id."""
    with open_gradebook(course_root) as gb:
        return [student_progress(course_root, s.id, rule, gradebook=gb)
                for s in sorted(gb.students, key=lambda s: s.id)]


def format_progress(progress: Progress) -> str:
    """A short table: one line per assignment, then the verdict and what is missing."""
    lines = [f"Progress of {progress.full_name} ({progress.student})"]
    for s in progress.statuses:
        mark = "done   " if s.done else "MISSING"
        pts = f"{s.score:g}/{s.max_score:g} pts (need {s.needed:g})" if s.max_score else ""
        lines.append(f"  [{mark}] {s.name:<32} {pts:<26} {s.reason}")
    done = sum(s.done for s in progress.statuses)
    lines.append(f"{done} of {len(progress.statuses)} required assignments complete.")
    if progress.complete:
        lines.append("Complete: eligible for the certificate.")
    else:
        lines.append("Not complete yet - missing: " + ", ".join(s.name for s in progress.missing))
    return "\n".join(lines)
