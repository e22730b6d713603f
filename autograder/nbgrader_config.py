"""nbgrader configuration of the course (also loaded by the repository's root nbgrader_config.py,
so `nbgrader ...` and the formgrader work from the repository root).

Layout nbgrader sees, relative to the course root (the repository):
  solutions/<assignment>/<notebook>.ipynb            source notebooks (edited by hand)
  course/<assignment>/<notebook>.ipynb               release (generated, committed)
  submitted/<student>/<assignment>/...               collected submissions   (git-ignored)
  autograded/, feedback/, gradebook.db               grading state            (git-ignored)
"""
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

COURSE_ROOT = Path(os.environ.get("INFERLAB_COURSE_ROOT", Path(__file__).resolve().parent.parent))

c.CourseDirectory.root = str(COURSE_ROOT)
c.CourseDirectory.course_id = "inferlab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.db_url = f"sqlite:///{COURSE_ROOT / 'gradebook.db'}"
# Only the lesson notebook is part of an assignment; ignore caches and checkpoints.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# Released notebooks must not carry the solutions' outputs; graded runs must be quick and must
# never hang a grading session: every cell gets at most 5 minutes (graded cells need ~1 s).
c.ClearOutputPreprocessor.enabled = True
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
