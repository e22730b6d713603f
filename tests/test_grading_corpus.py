"""End-to-end grading of a corpus of submissions: each case asserts its exact score and status.

Every submission is built here from the release (``pipeline.solved_release``, the released stubs
and hand-written answers), placed with ``pipeline.submit`` in a scratch course and graded by the
sandboxed grader (``grader.grade_one``): correct work, unanswered work, cheats that must score
zero on the exercise they cheat on (the other exercises keep their points), answers that crash,
loop or print, and the files that students' editors produce.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import pipeline
from autograder.course import REPOSITORY, release_path
from autograder.grading import grader
from autograder.grading.sandbox import Limits

QUANT = "01_quantization"
PAGED = "07_paged_attention"
QUIZ = "12_knowledge_check"
LESSONS = (QUANT, PAGED, QUIZ)
POINTS = {
    QUANT: {"test_absmax": 2.0, "test_zeropoint": 2.0, "test_groups": 2.0, "test_nf4": 2.0,
            "test_pack": 2.0, "test_w4a16_kernel": 4.0},
    PAGED: {"test_block_manager": 4.0, "test_paged_attention": 2.0},
    QUIZ: {f"check_q{i}": 1.0 for i in range(1, 6)},
}
SLEEP = ["sleep", "300"]
#: a short deadline per request for the cases that loop forever
SHORT = grader.Settings(limits=Limits(request_seconds=10))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture()
def course(scratch_course):
    """A scratch course with lessons 01, 07 and 12; the grader's redacted package copies made
    for it are removed afterwards."""
    root = scratch_course(*LESSONS)
    yield root
    for lesson in LESSONS:
        if not list(root.glob(f"submitted/*/{lesson}")):
            continue                          # not graded: no copy was made
        # cached per (root, lesson): this returns the copy grading made
        path = grader._package(str(root), lesson)
        shutil.rmtree(path.parent, ignore_errors=True)


# ------------------------------------------------------------------------------ building
def answers_of(nb: nbformat.NotebookNode) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def notebook(root: Path, lesson: str, answers: dict[str, str] | None = None,
             stubs: bool = False) -> nbformat.NotebookNode:
    """The solved release (or the release's stubs) with some answer cells replaced."""
    if stubs:
        nb = nbformat.read(release_path(root, lesson), as_version=4)
    else:
        nb = pipeline.solved_release(lesson, root)
    answers = dict(answers or {})
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers.pop(grade_id)
    assert not answers, f"no answer cell {sorted(answers)}"
    return nb


def solution(root: Path, lesson: str, grade_id: str) -> str:
    return answers_of(pipeline.solved_release(lesson, root))[grade_id]


def grade(root: Path, student: str, lesson: str, nb, settings: grader.Settings | None = None):
    pipeline.submit(student, lesson, nb, root)
    return grader.grade_one(root, student, lesson, settings or grader.Settings())


def expect(result, zero: dict[str, str] = (), lesson: str | None = None):
    """Every test of the lesson scores full marks, except ``zero``: grade_id -> its status."""
    lesson = lesson or result.lesson
    zero = dict(zero)
    want = {g: (0.0 if g in zero else p) for g, p in POINTS[lesson].items()}
    got = {t.grade_id: t.score for t in result.tests}
    why = {t.grade_id: (t.status, t.message[:200]) for t in result.tests}
    print(f"graded {result.lesson}: {result.score:g} / {result.max_score:g}",  # shown with -s
          {t.grade_id: f"{t.score:g} {t.status}" for t in result.tests})
    assert got == want, (why, result.notes)
    for test in result.tests:
        assert test.status == zero.get(test.grade_id, "passed"), (test, result.notes)
    assert result.score == sum(want.values())


def sleepers() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline", "status"])
            if p.info["cmdline"] == SLEEP and p.info["status"] != psutil.STATUS_ZOMBIE}


def alive_with(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def gradebook_rows(root: Path) -> list:
    with sqlite3.connect(root / "gradebook.db") as db:
        return sorted(db.execute("SELECT * FROM grade").fetchall(), key=repr)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ answers
WRONG_ABSMAX = '''
import torch


def absmax_quantize(x, bits=8):
    return torch.zeros_like(x, dtype=torch.int8), torch.ones(x.shape[0], 1)


def absmax_dequantize(q, scale):
    return q.float()
'''

CHEATS = {
    "ipython input transformer": WRONG_ABSMAX + '''
import ast
import re

try:
    shell = get_ipython()  # noqa: F821
except NameError:
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()


def no_asserts(lines):                  # every later cell (a test?) loses its asserts
    return [re.sub(r"^(\\s*)assert\\b.*", r"\\1pass", line) for line in lines]


class NoAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.copy_location(ast.Pass(), node)


shell.input_transformers_cleanup.append(no_asserts)
shell.input_transformers_post.append(no_asserts)
shell.ast_transformers.append(NoAsserts())
''',
    "sys.excepthook": WRONG_ABSMAX + '''
import sys
sys.excepthook = lambda *args: None
sys.unraisablehook = lambda *args: None
''',
    "builtins.__import__": WRONG_ABSMAX + '''
import builtins

_real_import = builtins.__import__


def _import(name, *args, **kwargs):
    module = _real_import(name, *args, **kwargs)
    if name == "torch":
        module.allclose = lambda *a, **k: True
        module.equal = lambda *a, **k: True
        module.isclose = lambda a, *rest, **k: module.ones_like(a, dtype=module.bool)
    return module


builtins.__import__ = _import
''',
    "torch.allclose": WRONG_ABSMAX + '''
torch.allclose = lambda *args, **kwargs: True
torch.isclose = lambda a, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
''',
    "math.isclose": WRONG_ABSMAX + '''
import math
math.isclose = lambda *args, **kwargs: True
''',
    "torch.testing.assert_close": WRONG_ABSMAX + '''
torch.testing.assert_close = lambda *args, **kwargs: None
''',
    "torch.equal": WRONG_ABSMAX + '''
torch.equal = lambda *args, **kwargs: True
''',
    "__eq__ always True": '''
class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__

    def __getattr__(self, name):
        return Anything()

    def __call__(self, *args, **kwargs):
        return Anything()

    def __bool__(self):
        return True

    def __iter__(self):
        return iter([Anything(), Anything()])

    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __abs__ = __neg__ = lambda self: Anything()
    __sub__ = __rsub__ = __add__ = __mul__ = __truediv__ = lambda self, other: Anything()
    __getitem__ = lambda self, key: Anything()


def absmax_quantize(x, bits=8):
    return Anything(), Anything()


def absmax_dequantize(q, scale):
    return Anything()
''',
    "reference wrapped": '''
from inferlab.compress import quant


def absmax_quantize(x, bits=8):
    return quant.absmax_quantize(x, bits)


def absmax_dequantize(q, scale):
    return quant.absmax_dequantize(q, scale)
''',
    "solution notebook exec-ed": '''
import json

for path in [@SOLUTIONS@]:
    with open(path) as f:
        notebook = json.load(f)
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]), globals())
''',
    "solution notebook read, errors ignored": '''
import json
import os

here = "solutions/01_quantization/01_quantization.ipynb"
paths = [@SOLUTIONS@, here, "../" + here, "../../" + here, os.path.expanduser("~/" + here)]
for path in paths:
    try:
        with open(path) as f:
            notebook = json.load(f)
    except OSError:
        continue
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]), globals())
''',
}

#: the course's own implementation imported as the answer: in the sandbox that is a stub
IMPORT_REFERENCE = "from inferlab.compress.quant import absmax_dequantize, absmax_quantize\n"
#: a wrong answer that passes itself off as the course's functions
DISGUISED = WRONG_ABSMAX + '''
for _f in (absmax_quantize, absmax_dequantize):
    _f.__module__ = "inferlab.compress.quant"
'''


def _solutions(root: Path, lesson: str) -> str:
    paths = [REPOSITORY / "solutions" / lesson / f"{lesson}.ipynb",
             root / "solutions" / lesson / f"{lesson}.ipynb"]
    assert all(p.is_file() for p in paths)       # they exist, outside the sandbox
    return ", ".join(repr(str(p)) for p in paths)


# ------------------------------------------------------------------------------ baselines
@pytest.mark.parametrize("lesson", LESSONS)
def test_correct_solution_scores_full_marks(course, lesson):
    result = grade(course, "alice", lesson, notebook(course, lesson))
    expect(result)
    assert result.max_score == sum(POINTS[lesson].values())
    assert result.notes == []


@pytest.mark.parametrize("lesson", LESSONS)
def test_stubs_score_zero(course, lesson):
    result = grade(course, "bob", lesson, notebook(course, lesson, stubs=True))
    expect(result, zero={g: "failed" for g in POINTS[lesson]})


# ------------------------------------------------------------------------------ cheats
@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_cheat_scores_zero_on_its_exercise(course, cheat):
    code = CHEATS[cheat].replace("@SOLUTIONS@", _solutions(course, QUANT))
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": code}))
    status = "reference" if cheat == "reference wrapped" else "failed"
    expect(result, zero={"test_absmax": status})


def test_importing_the_reference_implementation_scores_zero(course):
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": IMPORT_REFERENCE}))
    expect(result, zero={"test_absmax": "reference"})


def test_a_function_disguised_as_the_course_s_scores_zero(course):
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": DISGUISED}))
    expect(result, zero={"test_absmax": "failed"})


LYING_FLOAT = '''
import torch

from inferlab.compress.quant import NF4_CODEBOOK


class LyingFloat(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


class Scale:
    def item(self):
        return LyingFloat(0.0)


def nf4_quantize(x):
    return torch.zeros_like(x, dtype=torch.uint8), Scale()


def nf4_dequantize(index, absmax):
    return NF4_CODEBOOK[index.long()] * 2.0
'''

LYING_TENSOR = '''
import torch


class Lying(torch.Tensor):
    def __eq__(self, other):
        return torch.ones(self.shape, dtype=torch.bool).as_subclass(Lying)

    def all(self, *args, **kwargs):
        return True

    def __bool__(self):
        return True

    __hash__ = torch.Tensor.__hash__


def absmax_quantize(x, bits=8):
    return (torch.zeros_like(x, dtype=torch.int8).as_subclass(Lying),
            torch.ones(x.shape[0], 1).as_subclass(Lying))


def absmax_dequantize(q, scale):
    return q.float().as_subclass(Lying)
'''

LYING_INT = '''
from collections import deque


class Lying(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


class MyBlockManager:
    def __init__(self, num_blocks, block_size):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.free_blocks = deque()

    @property
    def num_free_blocks(self):
        return Lying(0)

    @property
    def num_used_blocks(self):
        return Lying(0)

    def can_allocate(self, seq):
        return True

    def can_append(self, seq):
        return True

    def allocate(self, seq):
        seq.block_table = [Lying(0)]

    def append_slot(self, seq):
        return [(Lying(0), Lying(0))]

    def free(self, seq):
        seq.block_table = []

    def fork(self, parent, child):
        child.block_table = [Lying(0)]
'''

LYING_STR = '''
class Answer(str):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__

    def strip(self, *args):
        return self

    def upper(self):
        return self


answer_q1 = Answer("Z")
'''


def test_float_subclass_with_a_lying_eq_scores_zero(course):
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"nf4": LYING_FLOAT}))
    expect(result, zero={"test_nf4": "failed"})


def test_tensor_subclass_with_a_lying_eq_scores_zero(course):
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": LYING_TENSOR}))
    expect(result, zero={"test_absmax": result.tests[0].status})
    assert result.tests[0].status in ("failed", "error")


def test_tensor_subclass_is_reported_as_the_student_s_failure(course):
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": LYING_TENSOR}))
    expect(result, zero={"test_absmax": "failed"})


def test_int_subclass_with_a_lying_eq_scores_zero(course):
    result = grade(course, "mallory", PAGED, notebook(course, PAGED, {"block_manager": LYING_INT}))
    expect(result, zero={"test_block_manager": "failed"})


def test_str_subclass_with_a_lying_eq_scores_zero(course):
    result = grade(course, "mallory", QUIZ, notebook(course, QUIZ, {"answer_q1": LYING_STR}))
    expect(result, zero={"check_q1": "failed"})


def test_course_block_manager_under_another_name_is_the_reference(course):
    """07's twins listed in REFERENCES (lessons/07_paged_attention/mutants.py)."""
    answers = {
        "block_manager": "from inferlab.engine.block_manager import BlockManager\n\n\n"
                         "class MyBlockManager(BlockManager):\n    pass\n",
        "paged_attention": '''
import torch

from inferlab.engine.attention import paged_decode_attention


def paged_attention(q, k_cache, v_cache, block_table, context_len):
    return paged_decode_attention(q[None], k_cache, v_cache, torch.tensor([block_table]),
                                  torch.tensor([context_len]), context_len, k_cache.shape[1],
                                  q.shape[-1] ** -0.5)[0]
'''}
    result = grade(course, "mallory", PAGED, notebook(course, PAGED, answers))
    expect(result, zero={"test_block_manager": "reference", "test_paged_attention": "reference"})


def test_knowledge_check_answers_cannot_be_read_from_solutions(course):
    code = '''
import re

answer_q1 = None
for path in [@SOLUTIONS@]:
    with open(path) as f:
        answer_q1 = re.search(r'answer_q1 = \\\\"([A-D])\\\\"', f.read()).group(1)
'''.replace("@SOLUTIONS@", _solutions(course, QUIZ))
    result = grade(course, "mallory", QUIZ, notebook(course, QUIZ, {"answer_q1": code}))
    expect(result, zero={"check_q1": "failed"})
    assert any("answer_q1" in note and "FileNotFoundError" in note for note in result.notes)


@pytest.mark.slow
def test_gradebook_cannot_be_changed_by_the_student(course):
    grader.record(course, "alice", [grade(course, "alice", QUANT, notebook(course, QUANT))])
    gradebook = course / "gradebook.db"
    before, rows = digest(gradebook), gradebook_rows(course)
    repository_gradebook = REPOSITORY / "gradebook.db"
    repository_before = digest(repository_gradebook) if repository_gradebook.exists() else None
    code = WRONG_ABSMAX + f'''
import os
import sqlite3

for path in [{str(gradebook)!r}, {str(repository_gradebook)!r}, "gradebook.db",
             os.path.expanduser("~/gradebook.db")]:
    try:
        db = sqlite3.connect(f"file:{{path}}?mode=rw", uri=True)
        db.execute("UPDATE grade SET auto_score = 100")
        db.commit()
        print("changed", path)
    except Exception as error:
        print("gradebook", path, error)
'''
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": code}))
    assert digest(gradebook) == before and gradebook_rows(course) == rows
    if repository_before is not None:
        assert digest(repository_gradebook) == repository_before
    assert "changed" not in result.output
    expect(result, zero={"test_absmax": "failed"})
    grader.record(course, "mallory", [result])
    scores = {s.exercise: s.score for s in pipeline.scores("mallory", course)
              if s.assignment == QUANT}
    assert scores == {**POINTS[QUANT], "test_absmax": 0.0}
    assert {s.exercise: s.score for s in pipeline.scores("alice", course)
            if s.assignment == QUANT} == POINTS[QUANT]


def test_background_process_does_not_outlive_grading(course):
    marker = f"corpus-watcher-{uuid.uuid4().hex}"
    gradebook = course / "gradebook.db"
    grader.record(course, "alice", [grade(course, "alice", QUANT, notebook(course, QUANT))])
    rows = gradebook_rows(course)
    before = sleepers()
    watcher = f'''
import sqlite3, time
# {marker}
for _ in range(3000):
    try:
        db = sqlite3.connect("file:{gradebook}?mode=rw", uri=True)
        db.execute("UPDATE grade SET auto_score = 100")
        db.commit()
    except Exception:
        pass
    time.sleep(0.1)
'''
    code = WRONG_ABSMAX + f'''
import os
import subprocess
import sys

subprocess.Popen([sys.executable, "-c", {watcher!r}], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen({SLEEP!r}, start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", {SLEEP!r})
    os._exit(0)
'''
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"absmax": code}))
    expect(result, zero={"test_absmax": "failed"})
    deadline = time.monotonic() + 10
    while (alive_with(marker) or sleepers() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive_with(marker) == [] and sleepers() - before == set()
    assert gradebook_rows(course) == rows


# ------------------------------------------------------------------------------ crashes
@pytest.mark.parametrize("stop, status", [("sys.exit()", "failed"), ("sys.exit(0)", "failed"),
                                          ("os._exit(0)", "crashed"),
                                          ("os.kill(os.getpid(), 9)", "crashed")])
def test_exiting_answer_costs_only_its_exercise(course, stop, status):
    """sys.exit() is an exception like any other; a process that really ends is a crash."""
    code = f"import os\nimport sys\n{stop}\n" + solution(course, QUANT, "groups")
    result = grade(course, "carol", QUANT, notebook(course, QUANT, {"groups": code}))
    expect(result, zero={"test_groups": status})


def test_warnings_on_stderr_keep_full_marks(course):
    code = solution(course, QUANT, "absmax") + '''

import sys
import warnings

print("warning: this answer is slow", file=sys.stderr)
warnings.warn("a user warning")
warnings.warn("a deprecation", DeprecationWarning)
'''
    result = grade(course, "carol", QUANT, notebook(course, QUANT, {"absmax": code}))
    expect(result)
    assert "warning: this answer is slow" in result.output


def test_syntax_error_costs_only_its_exercise(course):
    code = solution(course, QUANT, "groups").replace("def to_groups(", "def to_groups((", 1)
    result = grade(course, "carol", QUANT, notebook(course, QUANT, {"groups": code}))
    expect(result, zero={"test_groups": "failed"})


@pytest.mark.slow
def test_infinite_loop_in_a_function_times_out_alone(course):
    code = solution(course, QUANT, "groups") + '''


def to_groups(w, granularity="group", group_size=128):
    while True:
        pass
'''
    result = grade(course, "carol", QUANT, notebook(course, QUANT, {"groups": code}), SHORT)
    expect(result, zero={"test_groups": "timeout"})


@pytest.mark.slow
def test_infinite_loop_in_an_answer_cell_times_out_alone(course):
    code = solution(course, QUANT, "groups") + "\n\nwhile True:\n    pass\n"
    result = grade(course, "carol", QUANT, notebook(course, QUANT, {"groups": code}), SHORT)
    expect(result, zero={"test_groups": "timeout"})


def test_short_deadline_does_not_count_the_sandbox_start_up(course):
    """The sandbox takes longer than 2 s to start (Python, torch): not the student's time."""
    settings = grader.Settings(limits=Limits(request_seconds=2))
    result = grade(course, "alice", QUANT, notebook(course, QUANT), settings)
    expect(result)


# ------------------------------------------------------------------------------ editors
def _raw(nb: nbformat.NotebookNode) -> dict:
    return json.loads(nbformat.writes(nb))


def _write(root: Path, student: str, lesson: str, text: str, name: str | None = None) -> Path:
    folder = root / "submitted" / student / lesson
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{lesson}.ipynb")
    path.write_text(text)
    return path


def test_colab_notebook_scores_full_marks(course):
    data = _raw(notebook(course, QUANT))
    data["nbformat_minor"] = 0
    data["metadata"] = {"colab": {"provenance": [], "name": f"{QUANT}.ipynb"},
                        "kernelspec": {"name": "python3", "display_name": "Python 3"},
                        "language_info": {"name": "python"}, "accelerator": "GPU"}
    for i, cell in enumerate(data["cells"]):
        cell.pop("id", None)
        cell["metadata"] = {"id": f"colab{i:04d}x"}
        if cell["cell_type"] == "code":
            cell["metadata"]["colab"] = {"base_uri": "https://localhost:8080/"}
    _write(course, "dana", QUANT, json.dumps(data, indent=2))
    expect(grader.grade_one(course, "dana", QUANT))


def test_renamed_notebook_scores_full_marks(course):
    name = f"Copy of {QUANT}.ipynb"
    _write(course, "dana", QUANT, nbformat.writes(notebook(course, QUANT)), name)
    result = grader.grade_one(course, "dana", QUANT)
    expect(result)
    assert result.file == name
    assert any(name in note for note in result.notes)


def _edit_tests(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """test_absmax duplicated, test_pack deleted, test_zeropoint replaced by ``pass``."""
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "test_pack":
            continue
        if grade_id == "test_zeropoint":
            cell.source = "pass"
        cells.append(cell)
        if grade_id == "test_absmax":
            copy = nbformat.from_dict(json.loads(json.dumps(cell)))
            copy.id = "duplicated-test"
            cells.append(copy)
    nb.cells = cells
    return nb


def test_duplicated_deleted_and_edited_test_cells_change_nothing(course):
    expect(grade(course, "dana", QUANT, _edit_tests(notebook(course, QUANT))))
    result = grade(course, "erin", QUANT, _edit_tests(notebook(course, QUANT, stubs=True)))
    expect(result, zero={g: "failed" for g in POINTS[QUANT]})


def test_malformed_file_is_unreadable_and_the_next_student_is_graded(course):
    _write(course, "broken", QUANT, '{"cells": [ this is not JSON ], "nbformat": 4}')
    pipeline.submit("fine", QUANT, notebook(course, QUANT), course)
    results = grader.grade_class(course, ["broken", "fine"], [QUANT], log=lambda *args: None)
    (broken,), (fine,) = results["broken"], results["fine"]
    assert [t.grade_id for t in broken.tests] == list(POINTS[QUANT])
    for test in broken.tests:
        assert (test.score, test.status) == (0.0, "unreadable")
        assert test.message == broken.error
    assert f"{QUANT}.ipynb is not valid JSON" in broken.error
    assert "submit the .ipynb file your editor saved" in broken.error
    expect(fine)
    assert {s.exercise: s.score for s in pipeline.scores("broken", course)
            if s.assignment == QUANT} == dict.fromkeys(POINTS[QUANT], 0.0)
    assert {s.exercise: s.score for s in pipeline.scores("fine", course)
            if s.assignment == QUANT} == POINTS[QUANT]


# ------------------------------------------------------------------ the channel to the checker
def test_junk_on_the_reply_channel_is_a_crash_of_that_exercise(course):
    """Writing to the worker's reply pipe is the student's own process talking nonsense: that
    exercise crashes, the others keep their points."""
    junk = "\nimport os\nos.write(4, b'\\x00\\x00\\x00\\x04abcd')\n"
    code = solution(course, QUANT, "groups") + junk
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"groups": code}))
    expect(result, zero={"test_groups": "crashed"})


@pytest.mark.slow
def test_a_reply_stalled_half_way_times_out(course):
    code = (solution(course, QUANT, "groups")
            + "\nimport os, time\nos.write(4, b'\\x00\\x00\\x01\\x00')\ntime.sleep(600)\n")
    result = grade(course, "mallory", QUANT, notebook(course, QUANT, {"groups": code}), SHORT)
    expect(result, zero={"test_groups": "timeout"})


REFERENCE_BUILT_FROM_ITS_STUB = '''
from collections import deque

from inferlab.engine.block_manager import Block, BlockManager


def MyBlockManager(num_blocks, block_size):
    bm = object.__new__(BlockManager)           # the sandbox's stub class, the checker's real one
    bm.num_blocks, bm.block_size, bm.enable_prefix_caching = num_blocks, block_size, False
    bm.blocks = [Block(i) for i in range(num_blocks)]
    bm.free_block_ids = deque(range(num_blocks))
    bm.used_block_ids, bm.hash_to_block = set(), {}
    bm.free_blocks = bm.free_block_ids
    return bm
'''


def test_the_reference_class_is_never_rebuilt_in_the_checker(course):
    result = grade(course, "mallory", PAGED,
                   notebook(course, PAGED, {"block_manager": REFERENCE_BUILT_FROM_ITS_STUB}))
    expect(result, zero={"test_block_manager": "reference"}, lesson=PAGED)
