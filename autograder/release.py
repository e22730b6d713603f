"""One lesson source, one command: ``python -m autograder release [LESSON...]``.

    lessons/NN_name/NN_name.py  --(autograder.authoring)-->  solutions/NN_name/NN_name.ipynb
                                --(nbgrader generate_assignment)-->  course/NN_name/NN_name.ipynb

The script is the only file written by hand; both notebooks are generated and committed. Both
steps are deterministic: cell ids come from the cell's position, notebooks are written sorted and
without outputs, so rebuilding an unchanged lesson gives byte-identical files.

``sync_problems`` tells whether the committed notebooks are what ``release`` would write, without
writing anything: the source notebook is rebuilt in memory from the script, and the student
notebook is generated in memory by nbgrader's own ``GenerateAssignment`` converter with the
course's configuration (everything but the gradebook). Each difference names the lesson, the cell
and what differs - a cell's source or its nbgrader metadata (grade id, points, the
locked/solution/grade flags, schema version, checksum) - and the command that fixes it.
"""
from __future__ import annotations

import difflib
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import nbformat

from .course import (
    CourseError,
    course_root,
    release_path,
    require_course,
    script_path,
    select,
    source_path,
)

#: the nbgrader metadata of a cell that grading depends on, compared key by key
NBGRADER_KEYS = ("grade_id", "points", "locked", "solution", "grade", "schema_version", "cell_type",
                 "checksum")
MAX_DIFFERENCES = 6


class ReleaseError(CourseError):
    """nbgrader refused to generate a lesson (its reason is in the message)."""


def command(lesson: str | None = None) -> str:
    """The command that rebuilds ``lesson`` (or every lesson)."""
    return "python -m autograder release" + (f" {lesson}" if lesson else "")


# ------------------------------------------------------------------ step 1: script -> source
def source_text(script: Path) -> str:
    """The source notebook, exactly as ``release`` writes it, built from a lesson script."""
    from .authoring import parse_script

    try:
        text = Path(script).read_text(encoding="utf-8")
        return notebook_text(parse_script(text, Path(script).stem))
    except ValueError as exc:  # a marker without its id=..., points that are not a number
        raise CourseError(f"{script}: {exc}") from None


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """A notebook as nbformat writes it to disk (sorted keys, one-space indent, final newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build_source(root: Path, lesson: str) -> bool:
    """Write ``solutions/<lesson>`` from the lesson's script; True when the file changed."""
    text = source_text(script_path(root, lesson))
    target = source_path(root, lesson)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return True


# ----------------------------------------------------------------- step 2: source -> release
def generate(root: Path, lesson: str, *, gradebook: bool = True) -> Path:
    """``nbgrader generate_assignment LESSON --force`` for the course at ``root``, in this process:
    the same converter nbgrader's command runs, with the course's configuration, imported once
    for all lessons. With ``gradebook=False`` nothing is recorded in ``gradebook.db``."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import SaveCells
    from traitlets.config import Config

    from .nbgrader_config import configure

    cfg = configure(Config(), root)
    cfg.CourseDirectory.assignment_id = lesson
    cfg.BaseConverter.force = True
    if not gradebook:
        cfg.GenerateAssignment.no_database = True
        steps = GenerateAssignment.class_traits()["preprocessors"].default()
        cfg.GenerateAssignment.preprocessors = [s for s in steps if s is not SaveCells]
    converter = GenerateAssignment(coursedir=CourseDirectory(config=cfg), config=cfg)
    # nbgrader runs `alembic` (found on PATH) when it creates a gradebook: this environment's.
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])
    try:
        with _errors_of(converter.log) as errors:
            try:
                converter.start()
            except Exception as exc:
                raise ReleaseError(f"nbgrader could not generate {lesson}: "
                                   + _reason(errors, exc)) from None
    finally:
        os.environ["PATH"] = path
    return release_path(root, lesson)


def release_text(root: Path, lesson: str) -> str:
    """The student notebook nbgrader makes from the committed source notebook of ``lesson``,
    generated in a scratch course folder (nothing in ``root`` is written)."""
    with tempfile.TemporaryDirectory(prefix="inferlab-release-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(source_path(root, lesson).parent, scratch / "solutions" / lesson,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))
        return generate(scratch, lesson, gradebook=False).read_text(encoding="utf-8")


def _reason(errors: list[str], exc: Exception) -> str:
    """nbgrader's logged errors in one line (a traceback by its last line)."""
    lines = []
    for message in errors:
        tail = [line.strip() for line in message.splitlines() if line.strip()]
        if tail and "Traceback" in tail[0]:
            tail = tail[-1:]
        lines.append(" ".join(tail))
    lines = [line for line in dict.fromkeys(lines) if line and "see the" not in line]
    return "; ".join(lines[-3:]) or str(exc)


@contextmanager
def _errors_of(log: logging.Logger):
    """Collect the errors nbgrader logs (instead of printing its progress) while converting."""
    errors: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: errors.append(record.getMessage())
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield errors
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


# ----------------------------------------------------------------------------- comparison
def _label(index: int, cell) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if grade_id:
        return f"cell {index} (grade id {grade_id!r})"
    first = next((line for line in cell.get("source", "").splitlines() if line.strip()), "")
    return f"cell {index} ({cell.get('cell_type')}: {first[:40]!r})"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _source_difference(expected: str, actual: str) -> str:
    exp, act = expected.splitlines(), actual.splitlines()
    for line, (e, a) in enumerate(zip(exp, act), start=1):
        if e != a:
            return f"source line {line}: committed {_short(a)}, expected {_short(e)}"
    return f"source has {len(act)} lines, expected {len(exp)}"


def _key_order(key: str) -> tuple[int, str]:
    return (NBGRADER_KEYS.index(key) if key in NBGRADER_KEYS else len(NBGRADER_KEYS), key)


def _pair_differences(where: str, exp, act, ids: bool) -> list[str]:
    """What differs between two cells at the same place: source, nbgrader metadata, the rest."""
    if exp.cell_type != act.cell_type:
        return [f"{where}: a {act.cell_type} cell, expected {exp.cell_type}"]
    found = []
    if exp.source != act.source:
        found.append(f"{where}: {_source_difference(exp.source, act.source)}")
    exp_meta, act_meta = dict(exp.metadata), dict(act.metadata)
    exp_ng, act_ng = exp_meta.pop("nbgrader", {}), act_meta.pop("nbgrader", {})
    for key in sorted(set(exp_ng) | set(act_ng), key=_key_order):
        if exp_ng.get(key) != act_ng.get(key):
            found.append(f"{where}: nbgrader {key} is {_short(act_ng.get(key))}, "
                         f"expected {_short(exp_ng.get(key))}")
    if exp_meta != act_meta:
        found.append(f"{where}: metadata {_short(act_meta)}, expected {_short(exp_meta)}")
    if ids and exp.get("id") != act.get("id"):
        found.append(f"{where}: id {act.get('id')!r}, expected {exp.get('id')!r}")
    if (exp.get("outputs"), exp.get("execution_count")) != (act.get("outputs"),
                                                              act.get("execution_count")):
        found.append(f"{where}: has outputs (notebooks are committed without them)")
    return found


def cell_differences(expected: nbformat.NotebookNode, actual: nbformat.NotebookNode) -> list[str]:
    """What differs between two notebooks, cell by cell: sources, nbgrader metadata, the rest.

    Cells are matched by type and source (as ``diff`` matches lines), so one inserted cell is
    reported once rather than as a difference in every cell after it."""
    found = []
    if expected.get("metadata") != actual.get("metadata"):
        found.append("notebook metadata differs")
    if len(expected.cells) != len(actual.cells):
        found.append(f"{len(actual.cells)} cells, expected {len(expected.cells)}")
    ids = len(expected.cells) == len(actual.cells)  # else every later cell is renumbered

    def key(cell):
        return cell.cell_type, cell.source

    matcher = difflib.SequenceMatcher(a=[key(c) for c in expected.cells],
                                      b=[key(c) for c in actual.cells], autojunk=False)
    for tag, e0, e1, a0, a1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and e1 - e0 == a1 - a0):
            for offset in range(e1 - e0):
                exp, act = expected.cells[e0 + offset], actual.cells[a0 + offset]
                found += _pair_differences(_label(e0 + offset, exp), exp, act, ids)
            continue
        found += [f"{_label(i, expected.cells[i])}: missing from the committed notebook"
                  for i in range(e0, e1)]
        found += [f"committed {_label(i, actual.cells[i])}: not in the expected notebook"
                  for i in range(a0, a1)]
    return found


def _compare(lesson: str, root: Path, target: Path, made_from: Path, expected: str) -> list[str]:
    rel, origin = target.relative_to(root), made_from.relative_to(root)
    if not target.is_file():
        return [f"{lesson}: {rel} is missing; run `{command(lesson)}`"]
    actual = target.read_text(encoding="utf-8")
    if actual == expected:
        return []
    try:
        details = cell_differences(nbformat.reads(expected, as_version=4),
                                   nbformat.reads(actual, as_version=4))
    except Exception as exc:  # a hand-broken file: still one clear line
        details = [f"cannot be read as a notebook ({type(exc).__name__})"]
    details = details or ["the same cells, written differently (not by the release command)"]
    shown = details[:MAX_DIFFERENCES] + ([f"... and {len(details) - MAX_DIFFERENCES} more"]
                                         if len(details) > MAX_DIFFERENCES else [])
    return [f"{lesson}: {rel} is not what {origin} makes - rebuild it with `{command(lesson)}`:\n"
            + "\n".join(f"    {line}" for line in shown)]


def sync_problems(root: Path, lesson: str) -> list[str]:
    """Differences between the committed notebooks of ``lesson`` and what ``release`` writes:
    script -> solutions/ (when the lesson has a script) and solutions/ -> course/."""
    root = Path(root)
    found = []
    script, source = script_path(root, lesson), source_path(root, lesson)
    if script.is_file():
        found += _compare(lesson, root, source, script, source_text(script))
    if source.is_file():
        try:
            expected = release_text(root, lesson)
        except ReleaseError as exc:
            return found + [f"{lesson}: {exc} (fix {source.relative_to(root)}, or rebuild it "
                            f"from its script with `{command(lesson)}`)"]
        found += _compare(lesson, root, release_path(root, lesson), source, expected)
    elif not script.is_file():
        found.append(f"{lesson}: neither {script.relative_to(root)} "
                     f"nor {source.relative_to(root)} exists")
    return found


# -------------------------------------------------------------------------------- release
def release(root: Path | None = None, only: list[str] | None = None,
            log: Callable[[str], None] = lambda line: None, gradebook: bool = True) -> list[Path]:
    """Build each lesson (all, or ``only``): script -> source notebook -> student notebook.

    The second step is nbgrader's own ``generate_assignment``, which also records the
    assignment's graded cells in the gradebook, as autograding needs (``gradebook=False``: it
    does not). A lesson without a script (a scratch course holding only ``solutions/``) skips
    the first step.
    """
    from .authoring import problems

    root = require_course(course_root(root))
    written = []
    for lesson in select(root, only):
        script, source = script_path(root, lesson), source_path(root, lesson)
        if script.is_file():
            changed = build_source(root, lesson)
            log(f"{'built' if changed else 'unchanged':<9} {source.relative_to(root)}")
        elif not source.is_file():
            raise CourseError(f"{lesson} has neither {script} nor {source}")
        for issue in problems(nbformat.read(source, as_version=4), lesson):
            log(f"  warning: {lesson}: {issue}")
        target = release_path(root, lesson)
        before = target.read_bytes() if target.is_file() else None
        generate(root, lesson, gradebook=gradebook)
        state = "unchanged" if target.read_bytes() == before else "released"
        log(f"{state:<9} {target.relative_to(root)}")
        written.append(target)
    return written
