"""Every lesson notebook, checked the way a student, nbgrader and a reviewer would use it.

* the source follows the authoring rules and has no outputs (nor has its release);
* the solution runs top to bottom in fast mode with the embedded model, and its "What you
  measured" section shows the figures it measured;
* ``nbgrader validate`` passes on the solution;
* ``nbgrader validate --invert`` on the released stubs: every graded test fails;
* for every exercise, wrong answers that pass the visible tests fail the hidden ones.
"""
from __future__ import annotations

import hashlib
import linecache
import subprocess
import sys
import traceback

import psutil
import pytest

from autograder.authoring import problems
from autograder.pipeline import answer_code, kernel_flags
from inferlab.lab import recap
from tests import notebooks as nbt
from tests.test_serving_servers import ListenWatcher, assert_no_descendants

LESSONS = nbt.lesson_ids()
MEASURES_NOTHING = {"12_knowledge_check"}


def test_there_are_lessons():
    assert "00_why_inference_is_slow" in LESSONS


@pytest.mark.parametrize("lesson", LESSONS)
def test_source_follows_the_rules(lesson):
    assert problems(nbt.read(nbt.solution_path(lesson))) == []


@pytest.mark.parametrize("lesson", LESSONS)
def test_release_exists_without_outputs_or_solutions(lesson):
    path = nbt.release_path(lesson)
    assert path.is_file(), f"run `make release`: {path} is missing"
    nb = nbt.read(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and not cell.execution_count
        assert "### BEGIN SOLUTION" not in cell.source
        assert "### BEGIN HIDDEN TESTS" not in cell.source


# Lessons that start servers run one at a time (one xdist group): two Ray or vLLM instances
# started side by side compete for the same machine-wide resources.
SERVER_LESSONS = {"10_serving_engines", "11_distributed_serving"}


def _execution_params():
    servers = pytest.mark.xdist_group("servers")
    return [pytest.param(lesson, marks=servers) if lesson in SERVER_LESSONS else lesson
            for lesson in LESSONS]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", _execution_params())
def test_solution_runs_top_to_bottom(lesson):
    """Runs every cell; meanwhile every listening socket must be on loopback, and afterwards no
    process the notebook started may be left."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with ListenWatcher(interval=0.2) as watcher:
        nb = nbt.execute(nbt.solution_path(lesson))
    outside = watcher.outside_loopback()
    assert not outside, f"{lesson} listened outside loopback: {outside}"
    assert_no_descendants(before, grace=30)
    if lesson not in MEASURES_NOTHING:         # its "What you measured" section lists figures
        assert recap.shown_in(nb), f"{lesson} showed no recap of what it measured"


def _validate(path, *flags):
    command = [sys.executable, "-m", "nbgrader", "validate", *flags, *kernel_flags(), str(path)]
    result = subprocess.run(command, cwd=path.parent, capture_output=True, text=True)
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_nbgrader_validate_passes_on_solution(lesson):
    output = _validate(nbt.solution_path(lesson))
    assert "Success! Your notebook passes all the tests." in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_every_graded_test_fails_on_released_stubs(lesson):
    output = _validate(nbt.release_path(lesson), "--invert")
    assert "NOTEBOOK PASSED ON" not in output and "Success!" in output, output[-3000:]


def _exec(source: str, namespace: dict) -> None:
    """``exec`` a cell as Jupyter does: its source stays readable by ``inspect`` (Triton's
    ``@triton.jit`` reads a kernel's source when it is defined)."""
    filename = f"<cell {hashlib.sha256(source.encode()).hexdigest()[:16]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)


def _run(source: str, namespace: dict) -> str | None:
    """Execute ``source``; return None on success or a one-line reason on failure."""
    try:
        _exec(source, namespace)
        return None
    except Exception as error:  # noqa: BLE001 - any failure of a test cell counts
        first_line = f"{error.__class__.__name__}: {error}".splitlines()[0][:200]
        return first_line or traceback.format_exc(limit=1)


@pytest.mark.parametrize("lesson", LESSONS)
def test_hidden_tests_reject_wrong_answers(lesson):
    nb = nbt.read(nbt.solution_path(lesson))
    answers = {c.metadata["nbgrader"]["grade_id"]: answer_code(c.source)
               for c in nbt.cells(nb, "solution")}
    tests = [c.source for c in nbt.cells(nb, "grade")]
    mutants, context = nbt.mutants_of(lesson)
    without = sorted(set(answers) - set(mutants))
    assert not without, f"answer cells without mutants: {without}"

    def namespace_with(replaced: str | None = None, wrong: str | None = None) -> dict:
        namespace: dict = {}
        exec(context, namespace)
        for grade_id, code in answers.items():
            _exec(wrong if grade_id == replaced else code, namespace)
        return namespace

    # The reference answers pass every test, visible and hidden, in this isolated setting.
    namespace = namespace_with()
    for source in tests:
        assert _run(nbt.without_markers(source), namespace) is None, source[:200]

    for grade_id, wrong_answers in mutants.items():
        assert wrong_answers, f"no mutant for {grade_id}"
        for wrong in wrong_answers:
            namespace = namespace_with(grade_id, wrong)
            visible = [_run(nbt.visible_part(s), namespace) for s in tests]
            assert visible == [None] * len(tests), \
                f"mutant of {grade_id} must pass the visible tests: {visible}"
            hidden = [_run(nbt.without_markers(s), namespace) for s in tests]
            assert any(hidden), f"a wrong {grade_id} passes the hidden tests too:\n{wrong}"

    for grade_id, shortcuts in nbt.shortcuts_of(lesson).items():
        assert grade_id in answers, f"shortcuts for {grade_id}, which is no answer cell"
        for shortcut in shortcuts:
            namespace = namespace_with(grade_id, shortcut)
            visible = [_run(nbt.visible_part(s), namespace) for s in tests]
            assert any(visible), \
                f"a shortcut for {grade_id} passes the visible tests:\n{shortcut}"


def test_some_lessons_list_shortcuts():
    assert any(nbt.shortcuts_of(lesson) for lesson in LESSONS)
