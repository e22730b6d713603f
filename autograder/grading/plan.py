"""What grading a lesson executes, read from the trusted source notebook (``solutions/``).

Grading runs only what a verdict needs, in the notebook's order:

* each **answer cell** of the student, in the sandbox, preceded by the few statements of the
  lesson's own cells that the answer uses (its imports, a constant): a *slice* of the lesson,
  computed from the names the student's code reads - never the lesson's measurements;
* each **test cell**, visible and hidden tests together, from the source notebook, in the trusted
  checker; the names an answer cell must define (those the solution defines) are bound there to
  the student's values: plain data, or proxies that call into the sandbox.

A test cell the student changed, duplicated or deleted makes no difference: the grader owns them.
"""
from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

import nbformat

HIDDEN_MARKER = re.compile(r"^\s*### (BEGIN|END) HIDDEN TESTS\s*$")
SOLUTION_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
BUILTINS = frozenset(dir(builtins))


@dataclass
class Step:
    kind: str                 # "answer" or "test"
    grade_id: str
    source: str = ""          # a test's code (hidden tests included)
    points: float = 0.0
    names: tuple[str, ...] = ()   # an answer's names the tests use
    context: list[tuple[frozenset, str]] = field(default_factory=list)  # lesson statements before


@dataclass
class Plan:
    lesson: str
    steps: list[Step]

    @property
    def tests(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "test"]

    @property
    def answers(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "answer"]


def python_only(source: str) -> str:
    """A cell without IPython's magics and shell escapes (they are not Python)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def defined_names(tree: ast.Module) -> set[str]:
    """Names a block of code binds at its top level."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            names.update(n.id for n in ast.walk(node)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


def read_names(tree: ast.AST) -> set[str]:
    """The names a block of code reads and never binds itself: what it needs from outside."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)} - bound - BUILTINS


def statements(source: str) -> list[tuple[frozenset, str]]:
    """A lesson cell's top-level statements, each with the names it binds."""
    code = python_only(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        names = defined_names(ast.Module(body=[node], type_ignores=[]))
        if names:
            out.append((frozenset(names), ast.get_source_segment(code, node) or ""))
    return out


def lesson_slice(student_code: str, context: list[tuple[frozenset, str]]) -> str:
    """The lesson statements the student's code needs, transitively, in the lesson's order."""
    try:
        needed = read_names(ast.parse(python_only(student_code)))
    except SyntaxError:
        needed = set()
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i in range(len(context) - 1, -1, -1):
            names, code = context[i]
            if i in chosen or not names & needed:
                continue
            # only the latest statement binding a name counts for that name
            later = set().union(*(context[j][0] for j in chosen if j > i)) if chosen else set()
            if not (names & needed) - later:
                continue
            chosen.add(i)
            changed = True
            try:
                needed |= read_names(ast.parse(code))
            except SyntaxError:
                pass
    return "\n".join(context[i][1] for i in sorted(chosen))


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not HIDDEN_MARKER.match(line))


def build_plan(lesson: str, source: nbformat.NotebookNode) -> Plan:
    """The grading plan of one lesson from its source notebook."""
    steps: list[Step] = []
    context: list[tuple[frozenset, str]] = []
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            code = "\n".join(line for line in cell.source.splitlines()
                             if not SOLUTION_MARKER.match(line))
            try:
                tree = ast.parse(python_only(code))
                names = sorted(n for n in defined_names(tree) if not _is_import(tree, n))
            except SyntaxError:
                names = []
            steps.append(Step("answer", meta["grade_id"], names=tuple(names),
                              context=list(context)))
        elif meta.get("grade"):
            steps.append(Step("test", meta["grade_id"], source=without_markers(cell.source),
                              points=float(meta.get("points", 0))))
        else:
            context.extend(statements(cell.source))
    return Plan(lesson, steps)


def _is_import(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name).split(".")[0] == name for a in node.names):
            return True
    return False
