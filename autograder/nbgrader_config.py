"""nbgrader configuration of the course: ``configure(c)`` fills nbgrader's config object.

The repository's root ``nbgrader_config.py`` calls it, so ``nbgrader ...`` and the formgrader work
from the repository root; ``autograder.release`` applies the same settings to nbgrader's
preprocessors in-process (the fast release-sync check), so both can never disagree.

Layout nbgrader sees, relative to the course root (``autograder.course.course_root()``):
  solutions/<assignment>/<notebook>.ipynb            source notebooks (built from lessons/)
  course/<assignment>/<notebook>.ipynb               release (generated, committed)
  submitted/<student>/<assignment>/...               collected submissions   (git-ignored)
  autograded/, feedback/, gradebook.db               grading state            (git-ignored)
"""
from __future__ import annotations

from pathlib import Path

from .course import course_root

COURSE_ID = "inferlab"
CODE_STUB = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
TEXT_STUB = "YOUR ANSWER HERE"


def configure(c, root: Path | None = None):
    """Set the course's options on ``c`` (a traitlets ``Config``) and return it."""
    root = course_root(root)
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "course"
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    # Only the lesson notebook is part of an assignment; ignore caches and checkpoints.
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

    # Released notebooks must not carry the solutions' outputs; graded runs must be quick and must
    # never hang a grading session: every cell gets at most 5 minutes (graded cells need ~1 s).
    c.ClearOutputPreprocessor.enabled = True
    c.ExecutePreprocessor.timeout = 300
    c.Execute.timeout = 300
    c.Execute.interrupt_on_timeout = True
    c.ClearSolutions.code_stub = dict(CODE_STUB)
    c.ClearSolutions.text_stub = TEXT_STUB
    return c
