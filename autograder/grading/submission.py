"""A submitted file -> the student's source for each answer cell of the release.

Students hand in whatever their editor saved: JupyterLab and the classic Notebook keep nbgrader's
cell metadata (and add their own keys), VS Code may drop cell ids or metadata, Google Colab drops
nbgrader's metadata and the cell ids, old tools write nbformat 4.4 (no ids) or even nbformat 3.
Some students rename the file, duplicate or move cells, add scratch cells, edit a test cell, or
submit something that is not a notebook at all. This module trusts none of that blindly:

* :func:`find_notebook` picks the file to grade in ``submitted/<student>/<lesson>/``;
* :func:`read_answers` parses it (a :class:`SubmissionError` with a one-line reason and remedy
  when it cannot be graded) and re-attaches every answer ("solution") cell of the release:

  1. the release's other cells (tests, lesson code, text) are matched by content, ignoring
     whitespace, in order (a longest common subsequence): they are the *anchors*;
  2. a student cell counts for answer ``G`` when its content defines the names that the release
     stub of ``G`` defines (``def quantize``, ``class MyBlockManager``, ``answer_q1 =``; for a
     stub without such names, when it holds all the stub's signature lines), or, when its
     content identifies no answer, when its nbgrader metadata says it is the solution cell ``G``.
     Stubs that cannot be told apart by content are told apart by metadata, then by position;
  3. test cells and lesson code cells that the student changed are recognised (by metadata, or
     by similarity between the same anchors) and reported; the grader uses its own;
  4. an answer still missing is looked for by position: a cell of its type between the anchors
     around the release's answer cell, the one most like the stub;
  5. several copies of an answer: the last one that defines the stub's names counts (the last
     one when none does), as a kernel run from top to bottom would leave it.

Outputs, attachments, widget state and every other piece of metadata are ignored. What the
student or the instructor should know ends up in :attr:`Answers.notes`, one sentence each.
"""
from __future__ import annotations

import ast
import difflib
import functools
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = ["MAX_BYTES", "Answers", "SubmissionError", "find_notebook", "read_answers"]

MAX_BYTES = 50 * 1024 * 1024
MARKERS = frozenset({"# YOUR CODE HERE", "raise NotImplementedError()", "raise NotImplementedError",
                     "YOUR ANSWER HERE"})
SIMILAR = 0.6          # difflib ratio above which an unmatched cell is taken for an edited one
_LISTED = 5            # cells named in one note at most


class SubmissionError(ValueError):
    """A file that cannot be graded; the message (one line) says why and what to do."""


@dataclass
class Answers:
    sources: dict[str, str]
    """grade_id of every answer cell of the release -> the student's code for it (the release stub
    when the student's answer was not found)."""
    notes: list[str] = field(default_factory=list)
    """One short sentence per thing the student or the instructor should know."""
    cells: dict[str, int] = field(default_factory=dict)
    """grade_id -> index (from 0) of the student's cell graded for it; only answers found."""

    def found(self, grade_id: str) -> bool:
        """Whether the student's answer cell ``grade_id`` was located."""
        return grade_id in self.cells


# ---------------------------------------------------------------------------- the file
def find_notebook(folder: Path, lesson: str) -> tuple[Path, list[str]]:
    """The notebook to grade in ``submitted/<student>/<lesson>/``, and notes about the choice.

    ``<lesson>.ipynb`` if present; else the only notebook there; else the one named like the
    lesson ("Copy of 03_pruning.ipynb", "03_pruning (1).ipynb"; the most recently modified of
    several); Jupyter's checkpoints only when nothing else is there. A :class:`SubmissionError`
    when there is no notebook, or several and none named like the lesson.
    """
    folder = Path(folder)
    expected = f"{lesson}.ipynb"
    if not folder.is_dir():
        raise SubmissionError(f"nothing was submitted for {lesson}: there is no folder {folder}")
    if _regular(folder / expected):
        return folder / expected, []
    notebooks, checkpoints = [], []
    for path in _files(folder, depth=3):
        if path.suffix.lower() != ".ipynb":
            continue
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") and p != ".ipynb_checkpoints" or p == "__MACOSX" for p in parts):
            continue  # hidden files, macOS resource forks ("._x.ipynb"), archive debris
        if ".ipynb_checkpoints" in parts or path.stem.lower().endswith("-checkpoint"):
            checkpoints.append(path)
        else:
            notebooks.append(path)
    if not notebooks and not checkpoints:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        found = f" (found: {_names(others)})" if others else " (the folder is empty)"
        raise SubmissionError(f"no notebook (.ipynb) was submitted for {lesson}{found}: "
                              f"submit the notebook itself, {expected}")

    def rel(path: Path) -> str:
        return path.relative_to(folder).as_posix()

    def newest(paths: list[Path]) -> Path:
        return max(paths, key=lambda p: (p.stat().st_mtime, -len(rel(p)), rel(p)))

    exact = [p for p in notebooks if p.name.lower() == expected.lower()]
    named = [p for p in notebooks if _normal(lesson) in _normal(p.stem)]
    for pool in (exact, named):
        if pool:
            chosen = newest(pool)
            note = f"graded {rel(chosen)!r}: the notebook should be named {expected}"
            if len(pool) > 1:
                others = [rel(p) for p in pool if p != chosen]
                note += f" (the most recently modified; not graded: {_names(others)})"
            return chosen, [note]
    if len(notebooks) == 1:
        return notebooks[0], [f"graded {rel(notebooks[0])!r}: the notebook should be named "
                              f"{expected}"]
    if notebooks:
        raise SubmissionError(f"{len(notebooks)} notebooks were submitted for {lesson} and none is "
                              f"named like it ({_names([rel(p) for p in notebooks])}): "
                              f"submit only {expected}")
    chosen = newest(checkpoints)
    return chosen, [f"graded {rel(chosen)!r}, an automatic checkpoint copy, since no other "
                    f"notebook was submitted: submit {expected} itself"]


def _regular(path: Path) -> bool:
    """A plain file, not a link (a submission must not make the grader read elsewhere)."""
    return path.is_file() and not path.is_symlink()


def _files(folder: Path, depth: int) -> list[Path]:
    """Plain files under ``folder``, at most ``depth`` levels down, sorted."""
    found, level = [], [folder]
    for _ in range(depth):
        below = []
        for directory in level:
            for path in sorted(directory.iterdir()):
                if path.is_symlink():
                    continue
                if path.is_dir():
                    below.append(path)
                elif path.is_file():
                    found.append(path)
        level = below
    return sorted(found)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower())


def _names(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


_MAGIC = [(b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"),
          (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-zip archive"),
          (b"Rar!", "a RAR archive"), (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file")]
_SUBMIT = "submit the .ipynb file your editor saved (Jupyter: File > Save; Colab: File > " \
          "Download > Download .ipynb)"


def _load_cells(path: Path) -> tuple[list[dict], list[str]]:
    """The cells of the notebook at ``path`` as nbformat-4 dicts, and notes about the reading."""
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as error:
        raise SubmissionError(f"{name} cannot be read ({error.strerror}): "
                              "submit it again") from None
    if not _regular(path):
        raise SubmissionError(f"{name} is not a plain file (a link or a folder?): {_SUBMIT}")
    if size > MAX_BYTES:
        raise SubmissionError(f"{name} is {size / 2**20:.1f} MB, over the {MAX_BYTES // 2**20} MB "
                              "limit: clear all outputs (Edit > Clear Outputs of All Cells), save "
                              "and submit again")
    data = path.read_bytes()
    if not data.strip():
        raise SubmissionError(f"{name} is empty: the notebook was not saved before it was "
                              f"submitted; {_SUBMIT}")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise SubmissionError(f"{name} is {kind}, not a notebook: {_SUBMIT}")
    text = _decode(data)
    if text is None:
        raise SubmissionError(f"{name} holds binary data, not a notebook: {_SUBMIT}")
    start = text.lstrip()[:200].lower()
    if re.search(r"^(<<<<<<<|>>>>>>>)( |$)", text, re.M):
        raise SubmissionError(f"{name} holds unresolved merge-conflict markers (<<<<<<<): "
                              f"resolve the conflict or take one version; {_SUBMIT}")
    if start.startswith("<"):
        raise SubmissionError(f"{name} is a web page (HTML), not a notebook: {_SUBMIT}")
    if not start.startswith(("{", "[", '"')) and not start[:1].isdigit():
        raise SubmissionError(f"{name} is plain text (a script?), not a notebook: {_SUBMIT}")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        if start.startswith("{") and not text.rstrip().endswith("}"):
            raise SubmissionError(f"{name} is cut short (its text stops in the middle): it was "
                                  f"not completely saved or uploaded; {_SUBMIT}") from None
        where = (f" (line {error.lineno}, column {error.colno}: {error.msg})"
                 if isinstance(error, json.JSONDecodeError) else "")
        raise SubmissionError(f"{name} is not valid JSON{where}, so not a notebook (was it edited "
                              f"as text?): {_SUBMIT}") from None
    if not isinstance(raw, dict) or not ("cells" in raw or "worksheets" in raw):
        what = {list: "a list", dict: "an object without cells"}.get(type(raw), "a single value")
        raise SubmissionError(f"{name} is JSON but not a notebook (it holds {what}): {_SUBMIT}")
    notes = []
    version = raw.get("nbformat", 3 if "worksheets" in raw else 4)
    if type(version) is not int or version not in nbformat.versions:
        raise SubmissionError(f"{name} has an unknown notebook format version ({version!r}): "
                              "save it with Jupyter (nbformat 4) and submit again")
    if version < 4:
        try:
            old = nbformat.versions[version].to_notebook_json(
                raw, minor=raw.get("nbformat_minor", 0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # nbformat's complaints about the old file
                raw = nbformat.convert(old, 4)
        except Exception as error:  # noqa: BLE001 - any failure of an old format is the file's
            raise SubmissionError(f"{name} is an old notebook (nbformat {version}) that cannot be "
                                  f"converted ({type(error).__name__}): save it with a current "
                                  "Jupyter and submit again") from None
        notes.append(f"the notebook was in the old format nbformat {version}; it was converted "
                     "to nbformat 4 to be graded")
    cells = raw.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError(f"{name} is JSON but not a notebook (its 'cells' is not a list): "
                              f"{_SUBMIT}")
    usable = [c for c in cells if isinstance(c, dict)]
    if not usable:
        raise SubmissionError(f"{name} is a notebook with no cells: {_SUBMIT}")
    if len(usable) < len(cells):
        notes.append(f"{len(cells) - len(usable)} damaged cells of the notebook (not JSON "
                     "objects) were skipped")
    return usable, notes


def _decode(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ["utf-16"]
    else:
        encodings = ["utf-8-sig"]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            return text
    return None


# ---------------------------------------------------------------------------- the cells
def _source(cell) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(s if isinstance(s, str) else str(s) for s in source)
    return source if isinstance(source, str) else ""


def _key(source: str) -> str:
    """The content with all whitespace removed: locked cells match however it was re-indented."""
    return "".join(source.split())


def _nbgrader(cell) -> dict:
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else {}


@functools.lru_cache(maxsize=4096)
def _defined_names(source: str) -> dict[str, str] | None:
    """What a cell defines at its top level: name -> "def", "class" or "var" (an assignment);
    ``None`` when it is not Python (after blanking IPython's ``%magic`` and ``!shell`` lines)."""
    lines = [re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: dict[str, str] = {}

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[node.name] = "def"
            elif isinstance(node, ast.ClassDef):
                names[node.name] = "class"
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for sub in ast.walk(target):
                        if isinstance(sub, ast.Name):
                            names.setdefault(sub.id, "var")
            elif isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
    visit(tree.body)
    return names


def _defines(source: str, names: dict[str, str]) -> bool:
    """Whether ``source`` defines every one of ``names`` as the stub does: a function by a
    ``def``, a class by a ``class`` (so ``f = torch.compile(f)`` in a scratch cell is no copy of
    the answer ``f``), a variable in any way. By its syntax tree, or line by line when it does
    not parse (a half-written answer)."""
    parsed = _defined_names(source)
    for name, kind in names.items():
        if parsed is not None:
            if name not in parsed or kind != "var" and parsed[name] != kind:
                return False
            continue
        word = re.escape(name)
        patterns = {"def": rf"^(?:async\s+)?def\s+{word}\b", "class": rf"^class\s+{word}\b"}
        pattern = patterns.get(kind, "|".join([*patterns.values(),
                                               rf"^{word}\s*(?::[^=\n]*)?=(?!=)"]))
        if not re.search(pattern, source, re.M):
            return False
    return True


def _signature(source: str) -> tuple[str, ...]:
    """A stub's lines that a student keeps: all but blank lines and nbgrader's markers."""
    lines = (" ".join(line.split()) for line in source.splitlines())
    return tuple(line for line in lines if line and line not in MARKERS)


@dataclass
class _Answer:
    grade_id: str
    index: int                  # in the release
    cell_type: str
    stub: str
    names: dict[str, str]       # what the stub defines; identifies the student's cell
    signature: tuple[str, ...]
    gap: tuple[int, int] = (-1, -1)  # student cells strictly between these are its position

    def matches(self, cell: _Cell) -> bool:
        if cell.cell_type != "code" and (cell.cell_type != self.cell_type
                                         and _defined_names(cell.source) is None):
            return False
        if self.names:
            return _defines(cell.source, self.names)
        if self.signature:
            lines = set(_signature(cell.source))
            return all(line in lines for line in self.signature)
        return False

    @property
    def identity(self):
        if self.names:
            return tuple(sorted(self.names.items()))
        return self.signature or ("#", self.grade_id)


@dataclass
class _Cell:
    index: int
    cell_type: str
    source: str
    key: str
    meta: dict
    role: str = ""              # "anchor", "copy", "answer", "test", "edited" once placed

    @property
    def label(self) -> str:
        first = next((line.strip() for line in self.source.splitlines() if line.strip()), "")
        first = first if len(first) <= 40 else first[:37] + "..."
        return f"cell {self.index + 1} ({first!r})" if first else f"cell {self.index + 1}"


def _lcs(left: list[str], right: list[str]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``left`` and ``right`` (empty keys never
    match)."""
    n, m = len(left), len(right)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = table[i], table[i + 1]
        for j in range(m - 1, -1, -1):
            if left[i] and left[i] == right[j]:
                row[j] = below[j + 1] + 1
            else:
                row[j] = max(below[j], row[j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if left[i] and left[i] == right[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


# ---------------------------------------------------------------------------- re-attachment
def read_answers(path: Path, release: nbformat.NotebookNode) -> Answers:
    """The student's source for every answer cell of ``release``, read from the file ``path``
    (see the module's docstring); a :class:`SubmissionError` when the file cannot be graded."""
    raw_cells, notes = _load_cells(Path(path))
    cells = []
    for i, raw in enumerate(raw_cells):
        source = _source(raw)
        cell_type = raw.get("cell_type") if isinstance(raw.get("cell_type"), str) else "code"
        cells.append(_Cell(i, cell_type, source, _key(source), _nbgrader(raw)))

    answers: list[_Answer] = []
    fixed: list[tuple[int, dict, str, str]] = []   # the release's other cells:
    for index, cell in enumerate(release["cells"]):  # index, nbgrader metadata, source, type
        meta, source, cell_type = _nbgrader(cell), _source(cell), cell.get("cell_type", "code")
        if meta.get("solution") and meta.get("grade_id"):
            names = _defined_names(source) if cell_type == "code" else None
            answers.append(_Answer(meta["grade_id"], index, cell_type, source,
                                   names or {}, _signature(source)))
        else:
            fixed.append((index, meta, source, cell_type))
    by_id = {a.grade_id: a for a in answers}

    # 1. anchors: the release's other cells, by content, in order
    fixed_keys = [_key(source) for _, _, source, _ in fixed]
    anchor_of: dict[int, int] = {}          # release index -> student index
    for i, j in _lcs(fixed_keys, [c.key for c in cells]):
        anchor_of[fixed[i][0]] = j
        cells[j].role = "anchor"
    known = set(fixed_keys) - {""}
    for cell in cells:
        if not cell.role and cell.key in known:
            cell.role = "copy"              # a lesson cell duplicated or moved
    for answer in answers:
        before = [anchor_of[i] for i in anchor_of if i < answer.index]
        after = [anchor_of[i] for i in anchor_of if i > answer.index]
        answer.gap = (max(before, default=-1), min(after, default=len(cells)))

    # 2. by content, else by metadata
    # grade_id -> (student cell, how it was found, whether the cell defines the answer's names)
    claims: dict[str, list[tuple[int, str, bool]]] = {a.grade_id: [] for a in answers}
    per_note: dict[str, list[str]] = {a.grade_id: [] for a in answers}
    groups: dict[object, list[_Answer]] = {}
    for answer in answers:
        groups.setdefault(answer.identity, []).append(answer)
    for cell in cells:
        if cell.role:
            continue
        meta_id = cell.meta.get("grade_id") if cell.meta.get("solution") is True else None
        meta_id = meta_id if isinstance(meta_id, str) and meta_id in by_id else None
        matched = [a for a in answers if a.matches(cell)]
        if not matched:
            if meta_id is None:
                continue
            chosen = [by_id[meta_id]]
        else:
            chosen = []
            for identity in dict.fromkeys(a.identity for a in matched):
                chosen.append(_pick(groups[identity], cell, meta_id, claims))
            if meta_id is not None and all(a.grade_id != meta_id for a in chosen):
                holds = ", ".join(repr(a.grade_id) for a in chosen)
                per_note[meta_id].append(f"{cell.label} is marked as answer {meta_id!r} but holds "
                                         f"the code of answer {holds}: graded as {holds}")
        cell.role = "answer"
        for answer in chosen:
            how = ("metadata" if meta_id == answer.grade_id else
                   "content" if meta_id is None else "other answer's metadata")
            claims[answer.grade_id].append((cell.index, how, bool(matched)))
        if len(chosen) > 1:
            ids = " and ".join(repr(a.grade_id) for a in chosen)
            per_note[chosen[0].grade_id].append(f"{cell.label} holds the answers {ids}: it is "
                                                "graded in each of their places")

    # 3. tests and lesson cells the student changed, so that step 4 cannot take them
    test_notes = _test_notes(fixed, anchor_of, cells)
    edited = _edited(fixed, anchor_of, cells)

    # 4. by position, for answers still missing
    for answer in answers:
        if claims[answer.grade_id]:
            continue
        low, high = answer.gap
        free = [c for c in cells[low + 1:high]
                if not c.role and c.key and c.cell_type == answer.cell_type]
        if not free:
            continue
        best = max(free, key=lambda c: (_ratio(answer.stub, c.source), -c.index))
        best.role = "answer"
        claims[answer.grade_id].append((best.index, "position", False))
        more = f", the most similar of {len(free)} cells there" if len(free) > 1 else ""
        lacks = f"; it does not define {', '.join(answer.names)}" if answer.names else ""
        per_note[answer.grade_id].append(f"answer {answer.grade_id!r} was found by its position: "
                                         f"{best.label}, where the answer cell stood{more}{lacks}")

    # 5. the last copy counts: the last one that defines the answer's names, if any does (a
    #    pasted copy left empty redefines nothing when the notebook runs)
    sources, located, by_content = {}, {}, []
    for answer in answers:
        gid, found = answer.grade_id, claims[answer.grade_id]
        if not found:
            sources[gid] = answer.stub
            per_note[gid].append(f"answer {gid!r} was not found in the notebook: graded as "
                                 "unanswered")
            continue
        index, how, _ = [c for c in found if c[2]][-1] if any(c[2] for c in found) else found[-1]
        sources[gid], located[gid] = _lines(cells[index].source), index
        if how == "content" and all(h != "metadata" for _, h, _ in found):
            by_content.append(gid)
        if len(found) > 1:
            where = ", ".join(str(i + 1) for i, _, _ in found)
            which = ("the last one" if index == found[-1][0] else
                     f"the last one that defines {', '.join(answer.names)}")
            per_note[gid].insert(0, f"answer {gid!r} appears {len(found)} times (cells {where}): "
                                    f"{which}, cell {index + 1}, is graded, as running the "
                                    "notebook from top to bottom would leave it")
        if cells[index].cell_type != answer.cell_type:
            per_note[gid].append(f"answer {gid!r} is in a {cells[index].cell_type} cell: it is "
                                 f"graded as {answer.cell_type}")

    if by_content:
        notes.append(f"{_count(by_content, 'answer cell')} ({', '.join(by_content)}) "
                     f"{'was' if len(by_content) == 1 else 'were'} found by content: the "
                     "notebook lost nbgrader's cell metadata (Colab and some editors drop it)")
    for answer in answers:
        notes.extend(per_note[answer.grade_id])
    notes.extend(test_notes)
    if edited:
        notes.append(f"you changed {_count(edited, 'lesson cell')} ({_labels(edited)}): grading "
                     "runs the lesson's own version")
    added = [c for c in cells if not c.role and c.cell_type == "code" and c.key]
    if added:
        notes.append(f"{_count(added, 'code cell')} you added ({_labels(added)}) "
                     f"{'is' if len(added) == 1 else 'are'} not run in grading: put what an "
                     "answer needs (helpers, imports) inside its answer cell")
    return Answers(sources, notes, located)


def _lines(source: str) -> str:
    return source.replace("\r\n", "\n").replace("\r", "\n")


def _pick(group: list[_Answer], cell: _Cell, meta_id: str | None, claims: dict) -> _Answer:
    """Which of several answers whose stubs look alike ``cell`` is: the one its metadata names,
    else the one whose place (between the anchors around it) it is in, else in order: the
    first of those placed before the cell that has no cell yet, else the last of them."""
    if len(group) == 1:
        return group[0]
    for answer in group:
        if answer.grade_id == meta_id:
            return answer
    options = ([a for a in group if a.gap[0] < cell.index < a.gap[1]]
               or [a for a in group if a.gap[0] < cell.index] or group[:1])
    return next((a for a in options if not claims[a.grade_id]), options[-1])


def _test_notes(fixed, anchor_of, cells: list[_Cell]) -> list[str]:
    """What became of each test cell: duplicated, changed or deleted (never used either way)."""
    notes = []
    for index, meta, source, _ in fixed:
        if not (meta.get("grade") and not meta.get("solution")):
            continue
        gid, key = meta.get("grade_id", f"cell {index + 1}"), _key(source)
        copies = [c for c in cells if key and c.key == key]
        if len(copies) > 1:
            notes.append(f"test cell {gid!r} appears {len(copies)} times: the copies are ignored "
                         "(grading runs its own tests)")
            continue
        if copies:
            continue
        low, high = _around(index, anchor_of, len(cells))
        changed = [c for c in cells if not c.role and c.meta.get("grade_id") == gid]
        changed = changed or [c for c in cells[low + 1:high] if not c.role
                              and c.cell_type == "code" and _similar(source, c.source)]
        for cell in changed:
            cell.role = "test"
        if changed:
            notes.append(f"test cell {gid!r} was changed ({changed[0].label}): your version is "
                         "ignored, grading runs the original")
        else:
            notes.append(f"test cell {gid!r} was deleted: it is still graded")
    return notes


def _edited(fixed, anchor_of, cells: list[_Cell]) -> list[_Cell]:
    """The student's versions of the lesson's code cells (not run: grading runs the lesson's)."""
    edited = []
    for index, meta, source, cell_type in fixed:
        if index in anchor_of or cell_type != "code" or not source.strip() or meta.get("grade"):
            continue
        if any(c.key == _key(source) for c in cells):
            continue
        low, high = _around(index, anchor_of, len(cells))
        for cell in cells[low + 1:high]:
            if not cell.role and cell.cell_type == "code" and _similar(source, cell.source):
                cell.role = "edited"
                edited.append(cell)
                break
    return sorted(edited, key=lambda c: c.index)


def _around(index: int, anchor_of: dict[int, int], n: int) -> tuple[int, int]:
    before = [j for i, j in anchor_of.items() if i < index]
    after = [j for i, j in anchor_of.items() if i > index]
    return max(before, default=-1), min(after, default=n)


def _similar(a: str, b: str) -> bool:
    return bool(b.strip()) and _ratio(a, b) >= SIMILAR


def _ratio(a: str, b: str) -> float:
    """How alike two cells are (0 to 1): by characters for short cells, by lines for long ones
    (character matching is quadratic)."""
    if len(a) + len(b) > 4000:
        a, b = a.splitlines(), b.splitlines()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return matcher.ratio() if matcher.real_quick_ratio() >= SIMILAR / 2 else 0.0


def _count(items: list, what: str) -> str:
    return f"{len(items)} {what}{'' if len(items) == 1 else 's'}"


def _labels(cells: list[_Cell]) -> str:
    shown = ", ".join(c.label for c in cells[:_LISTED])
    return shown + (f" and {len(cells) - _LISTED} more" if len(cells) > _LISTED else "")
