"""A student's progress in the service: their best graded submission per lesson, against the
course's completion rule (``autograder.certificates.rule``, the same rule an instructor's
``certify`` applies to the nbgrader gradebook)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nbformat
from sqlalchemy import func, select

from autograder.certificates.rule import DEFAULT_RULE, CompletionRule
from autograder.course import release_path

from .models import Submission

EPS = 1e-9


@lru_cache(maxsize=None)
def lesson_points(course_root: str) -> dict[str, float]:
    """Every lesson the rule requires, and its total points (its graded cells')."""
    points = {}
    for lesson in DEFAULT_RULE.required_assignments(Path(course_root)):
        nb = nbformat.read(release_path(Path(course_root), lesson), as_version=4)
        points[lesson] = sum(float(c.metadata.get("nbgrader", {}).get("points", 0))
                             for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    return points


@dataclass
class LessonProgress:
    lesson: str
    best_score: float | None
    max_score: float
    needed: float
    submissions: int

    @property
    def done(self) -> bool:
        return self.best_score is not None and self.best_score + EPS >= self.needed

    def to_dict(self) -> dict:
        return {"lesson": self.lesson, "best_score": self.best_score, "max_score": self.max_score,
                "needed": self.needed, "done": self.done, "submissions": self.submissions}


def student_progress(session, course_root: Path, student_id: int,
                     rule: CompletionRule = DEFAULT_RULE) -> list[LessonProgress]:
    best = dict(session.execute(
        select(Submission.lesson, func.max(Submission.score))
        .where(Submission.student_id == student_id, Submission.status == "graded")
        .group_by(Submission.lesson)).all())
    counts = dict(session.execute(
        select(Submission.lesson, func.count(Submission.id))
        .where(Submission.student_id == student_id).group_by(Submission.lesson)).all())
    return [LessonProgress(lesson, best.get(lesson), points, rule.needed(lesson, points),
                           counts.get(lesson, 0))
            for lesson, points in lesson_points(str(course_root)).items()]


def criteria(course_root: Path, rule: CompletionRule = DEFAULT_RULE) -> str:
    return rule.narrative(list(lesson_points(str(course_root)))).replace(
        "(nbgrader autograding)", "(sandboxed autograding by the course service)")
