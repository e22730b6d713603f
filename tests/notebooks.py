"""Helpers for the notebook tests: discovery, execution, nbgrader validation, mutation runs."""
from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import nbformat

from autograder import course

REPO = course.REPOSITORY
HIDDEN = re.compile(r"^\s*### (BEGIN|END) HIDDEN TESTS\s*$")


def lesson_ids() -> list[str]:
    """Every lesson of the repository (a script in lessons/ or a notebook in solutions/)."""
    return course.lessons(REPO)


def script_path(lesson: str) -> Path:
    return course.script_path(REPO, lesson)


def solution_path(lesson: str) -> Path:
    return course.source_path(REPO, lesson)


def release_path(lesson: str) -> Path:
    return course.release_path(REPO, lesson)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def execute(path: Path, timeout: int = 600, extra_env: dict | None = None) -> nbformat.NotebookNode:
    """Run every cell of a notebook (in its folder) and return it with outputs; raise on error."""
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    from autograder import pipeline
    nb = read(path)
    env = dict(os.environ, **(extra_env or {}))
    # Unix-socket (ipc) transport: TCP ports picked by concurrent kernel launches can collide,
    # leaving a client listening to another kernel's messages - a silent hang.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=pipeline.ipc_socket_base())
    client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    old = dict(os.environ)
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
        if km.has_kernel:  # the client shuts down only kernels it started itself
            km.shutdown_kernel(now=True)
    return nb


def cells(nb, kind: str):
    """Answer cells (kind='solution') or graded test cells (kind='grade')."""
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get(kind)]


def visible_part(source: str) -> str:
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if HIDDEN.match(line) and "BEGIN" in line:
            return "\n".join(lines[:i])
    return source


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not HIDDEN.match(line))


def mutants_of(lesson: str):
    """(MUTANTS, CONTEXT) from lessons/<lesson>/mutants.py, kept beside the lesson's script."""
    namespace = runpy.run_path(str(course.mutants_path(REPO, lesson)))
    return namespace["MUTANTS"], namespace.get("CONTEXT", "")


def shortcuts_of(lesson: str) -> dict:
    """SHORTCUTS from the lesson's mutants.py: wrong answers the *visible* tests already reject (a
    student sees the failure before submitting, so they cannot be mutants)."""
    return runpy.run_path(str(course.mutants_path(REPO, lesson))).get("SHORTCUTS", {})
