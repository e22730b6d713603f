"""Where the course folder is, and which lessons it holds: the one definition every command uses.

The *repository* is the checkout this code runs from (it holds ``nbgrader_config.py``, the
verification page, ``lessons/``). The *course root* is the folder nbgrader works in: ``lessons/``
(the lesson scripts), ``solutions/`` (nbgrader's sources), ``course/`` (the release),
``submitted/``, ``autograded/``, ``feedback/`` and ``gradebook.db``. Normally both are the same
folder; tests and dry runs point the course root at a scratch copy.

``course_root()`` decides, in this order:

1. the folder given explicitly (``python -m autograder --root DIR ...``);
2. ``$INFERLAB_COURSE_ROOT`` (how ``autograder.pipeline`` tells nbgrader's own process);
3. the current folder, when it is a course (has ``lessons/`` or ``solutions/``);
4. the repository.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
ENV_VAR = "INFERLAB_COURSE_ROOT"
LESSON_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


class CourseError(ValueError):
    """Bad input about the course: a missing folder, an unknown lesson or student."""


def _is_course(folder: Path) -> bool:
    return (folder / "solutions").is_dir() or (folder / "lessons").is_dir()


def course_root(explicit: str | os.PathLike | None = None) -> Path:
    """The course folder (see the module's docstring for the order of precedence)."""
    if explicit is not None:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    cwd = Path.cwd()
    if _is_course(cwd):
        return cwd.resolve()
    return REPOSITORY


def require_course(root: Path) -> Path:
    """``root`` if it exists and looks like a course folder, else a :class:`CourseError`."""
    root = Path(root)
    if not root.is_dir():
        raise CourseError(f"course folder {root} does not exist")
    if not _is_course(root):
        raise CourseError(f"{root} is not a course folder (it has neither lessons/ nor solutions/)")
    return root


def script_path(root: Path, lesson: str) -> Path:
    """``lessons/NN_name/NN_name.py``: the lesson's one source, a percent-format script."""
    return Path(root) / "lessons" / lesson / f"{lesson}.py"


def mutants_path(root: Path, lesson: str) -> Path:
    """``lessons/NN_name/mutants.py``: plausible wrong answers the hidden tests must reject."""
    return Path(root) / "lessons" / lesson / "mutants.py"


def source_path(root: Path, lesson: str) -> Path:
    """``solutions/NN_name/NN_name.ipynb``: nbgrader's source notebook (built from the script)."""
    return Path(root) / "solutions" / lesson / f"{lesson}.ipynb"


def release_path(root: Path, lesson: str) -> Path:
    """``course/NN_name/NN_name.ipynb``: the student notebook, made by nbgrader from the source."""
    return Path(root) / "course" / lesson / f"{lesson}.ipynb"


def _named(folder: Path, suffix: str) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir()
            if LESSON_NAME.match(p.name) and (p / f"{p.name}{suffix}").is_file()}


def assignments(root: Path | None = None) -> list[str]:
    """nbgrader's assignments: folders of ``solutions/`` named NN_name holding NN_name.ipynb."""
    return sorted(_named(Path(root or course_root()) / "solutions", ".ipynb"))


def lessons(root: Path | None = None) -> list[str]:
    """Every lesson of the course: those with a script in ``lessons/`` and those that only
    have a source notebook in ``solutions/`` (a scratch copy of the course may hold only that)."""
    root = Path(root or course_root())
    return sorted(_named(root / "lessons", ".py") | _named(root / "solutions", ".ipynb"))


def select(root: Path, names: list[str] | None) -> list[str]:
    """The lessons ``names`` picks (all when empty); unknown names are a :class:`CourseError`.

    A name may be the full folder name (``03_pruning``) or just its number (``03``).
    """
    known = lessons(root)
    if not names:
        if not known:
            raise CourseError(f"no lessons in {root} (expected lessons/NN_name/NN_name.py "
                              "or solutions/NN_name/NN_name.ipynb)")
        return known
    chosen = []
    for name in names:
        name = name.strip().rstrip("/").split("/")[-1]
        matches = [k for k in known if k == name or k.split("_", 1)[0] == name]
        if len(matches) != 1:
            raise CourseError(f"no lesson named {name!r} in {root} "
                              f"(lessons: {', '.join(known) or 'none'})")
        chosen.append(matches[0])
    return list(dict.fromkeys(chosen))
