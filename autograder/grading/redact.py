"""A copy of the course package without the reference implementations a lesson asks students to
write: that copy is what the sandbox sees.

An answer that imports or calls ``inferlab.compress.quant.absmax_quantize`` instead of writing
``absmax_quantize`` gets, in the sandbox, a function that raises
:class:`ReferenceImplementationUsed`, and the checker scores the test zero with that reason.

The references of an exercise are found two ways: every course function or class with the name
of one the solution defines (``absmax_quantize`` in ``inferlab.compress.quant``), and the twins
with other names that ``lessons/NN_name/mutants.py`` lists in ``REFERENCES`` (lesson 07's
``MyBlockManager`` is ``inferlab.engine.block_manager:BlockManager``).
"""
from __future__ import annotations

import ast
import atexit
import runpy
import shutil
import tempfile
from pathlib import Path

STUB_MODULE = "_reference_removed"
STUB_SOURCE = '''"""Raised while grading by the course's reference implementations."""


class ReferenceImplementationUsed(RuntimeError):
    pass
'''


def package_root() -> Path:
    import inferlab
    return Path(inferlab.__file__).resolve().parent


def top_level_index(package: Path) -> dict[str, list[str]]:
    """name -> ["module:name", ...] for every top-level function and class of the package."""
    index: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = ".".join((package.name, *path.relative_to(package).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                index.setdefault(node.name, []).append(f"{module}:{node.name}")
    return index


def references(plan, mutants_file: Path | None, package: Path | None = None) -> dict[str, list]:
    """grade_id -> the package names that implement that exercise."""
    index = top_level_index(package or package_root())
    extra = {}
    if mutants_file is not None and mutants_file.is_file():
        extra = runpy.run_path(str(mutants_file)).get("REFERENCES", {})
    found = {}
    for step in plan.answers:
        names = [ref for name in step.names for ref in index.get(name, [])]
        found[step.grade_id] = sorted(set(names) | set(extra.get(step.grade_id, [])))
    return found


def redacted_copy(targets: list[str], package: Path | None = None) -> Path:
    """A temporary copy of the package (a folder named like it) with ``targets`` replaced by stubs
    that raise; the caller removes it."""
    package = package or package_root()
    scratch = Path(tempfile.mkdtemp(prefix="inferlab-redacted-"))
    atexit.register(shutil.rmtree, scratch, True)
    folder = scratch / package.name
    shutil.copytree(package, folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / f"{STUB_MODULE}.py").write_text(STUB_SOURCE)
    by_file: dict[Path, list[str]] = {}
    for target in targets:
        module, _, qualname = target.partition(":")
        parts = module.split(".")[1:]
        path = folder.joinpath(*parts).with_suffix(".py")
        if not path.is_file():
            path = folder.joinpath(*parts, "__init__.py")
        if not path.is_file():
            raise ValueError(f"reference {target}: no module file for {module}")
        by_file.setdefault(path, []).append(qualname)
    for path, qualnames in by_file.items():
        path.write_text(_stubbed(path.read_text(encoding="utf-8"), qualnames, package.name,
                                 ".".join((package.name, *path.relative_to(folder).with_suffix(
                                     "").parts)).removesuffix(".__init__")), encoding="utf-8")
    for path in folder.parent.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    folder.parent.chmod(0o755)
    return folder


def _stubbed(source: str, qualnames: list[str], package: str, module: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for qualname in qualnames:
        node = _find(tree, qualname)
        if node is None:
            raise ValueError(f"reference {module}:{qualname} not found")
        # A function keeps its decorators (a property stays a property that raises); a class
        # loses them (a dataclass would write its own __init__ over the stub's).
        start = node.lineno if not isinstance(node, ast.ClassDef) else min(
            [d.lineno for d in node.decorator_list] + [node.lineno])
        indent = " " * node.col_offset
        message = (f"{module}.{qualname} is the course's own implementation of this exercise: "
                   "while grading it is not available - write your own")
        raise_line = (f"from {package}.{STUB_MODULE} import ReferenceImplementationUsed; "
                      f"raise ReferenceImplementationUsed({message!r})")
        if isinstance(node, ast.ClassDef):
            stub = (f"{indent}class {node.name}:\n"
                    f"{indent}    def __init__(self, *args, **kwargs):\n"
                    f"{indent}        {raise_line}\n")
        else:
            stub = (f"{indent}def {node.name}(*args, **kwargs):\n"
                    f"{indent}    {raise_line}\n")
        edits.append((start, node.end_lineno, stub))
    for start, end, stub in sorted(edits, reverse=True):
        lines[start - 1:end] = [stub]
    return "".join(lines)


def _find(tree: ast.Module, qualname: str):
    """The function or class ``qualname`` ("f", "Class.method") defines in a module, or None."""
    node = tree
    for part in qualname.split("."):
        node = next((n for n in getattr(node, "body", []) if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            return None
    return node
