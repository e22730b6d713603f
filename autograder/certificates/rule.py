"""The completion rule: what a student must achieve to earn the certificate. ONE place to change it.

Default (the course's promise in the README and in notebook 12):

* every graded notebook of the course - every assignment in ``solutions/``, as
  ``autograder.pipeline.assignments`` lists them - scored at
  least ``min_fraction`` (70 %) of its points in the nbgrader gradebook, and
* the knowledge check (``12_knowledge_check``) scored at least ``knowledge_check_min_points``
  (4 of its 5 one-point questions).

A notebook with no graded points only has to be submitted and autograded. A submission waiting for
manual grading does not count yet. Change the numbers here (or build another ``CompletionRule`` in
a script); ``progress``, ``certify`` and the criteria text written into every credential all read
this object, so they cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CompletionRule:
    min_fraction: float = 0.70
    knowledge_check: str = "12_knowledge_check"
    knowledge_check_min_points: float = 4.0
    #: the assignments that count; None = every ``NN_name`` folder in ``<course>/solutions``
    assignments: tuple[str, ...] | None = None

    def required_assignments(self, course_root: Path) -> list[str]:
        """The assignments a student must complete, in course order."""
        if self.assignments is not None:
            return sorted(self.assignments)
        from autograder.pipeline import assignments  # the course's one definition of "assignment"

        source = Path(course_root) / "solutions"
        names = assignments(course_root) if source.is_dir() else []
        if not names:
            raise ValueError(f"no assignments found in {source} (expected NN_name/NN_name.ipynb)")
        return names

    def needed(self, assignment: str, max_score: float) -> float:
        """Points needed in ``assignment`` out of ``max_score``."""
        if assignment == self.knowledge_check:
            return self.knowledge_check_min_points
        return round(self.min_fraction * max_score, 6)

    def narrative(self, assignments: list[str]) -> str:
        """The rule in words, as written into the credential's ``criteria``."""
        text = (f"Every graded notebook of the course passed with at least {self.min_fraction:.0%} "
                "of its points")
        if self.knowledge_check in assignments:
            text += (", and the knowledge check with at least "
                     f"{self.knowledge_check_min_points:g} points")
        return text + " (nbgrader autograding)."


DEFAULT_RULE = CompletionRule()
