"""The instructor's pipeline and the one command line: where the course is, release, submissions,
autograde, scores, exit codes. Slow tests run nbgrader's full pipeline on a scratch course."""
import subprocess
import sys

import nbformat
import pytest

from autograder import course, pipeline
from autograder.cli import main, parser
from autograder.release import generate
from tests import notebooks as nbt

LESSON = "00_why_inference_is_slow"


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ------------------------------------------------------------------------ the course root
def test_course_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(course.ENV_VAR, raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert course.course_root() == course.REPOSITORY  # not a course folder: the repository
    (tmp_path / "here" / "solutions").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here")
    assert course.course_root() == (tmp_path / "here").resolve()  # the current course folder
    monkeypatch.setenv(course.ENV_VAR, str(tmp_path / "env"))
    assert course.course_root() == (tmp_path / "env").resolve()  # the environment
    assert course.course_root(tmp_path / "given") == (tmp_path / "given").resolve()  # explicit


def test_everything_uses_one_course_root():
    """The CLI, the pipeline, nbgrader's configuration and the certificate commands all ask
    autograder.course; nothing else derives the course folder from a file's location."""
    sources = {p.relative_to(course.REPOSITORY): p.read_text()
               for p in (course.REPOSITORY / "autograder").rglob("*.py")}
    for path, text in sources.items():
        if path.name != "course.py":
            assert '"INFERLAB_COURSE_ROOT"' not in text and "_default_course_root" not in text, path
            assert "Path(__file__).resolve().parent" not in text, path


def test_lessons_are_named_by_folder_or_number(scratch_course):
    root = scratch_course(LESSON, "12_knowledge_check")
    assert course.lessons(root) == [LESSON, "12_knowledge_check"]
    assert course.select(root, ["12", f"lessons/{LESSON}/"]) == ["12_knowledge_check", LESSON]
    with pytest.raises(course.CourseError, match="no lesson named '07'"):
        course.select(root, ["07"])


# ------------------------------------------------------------------------- the command line
COMMANDS = ["release", "build", "check", "demo", "grade", "scores", "progress", "certify",
            "verify", "revoke", "keys", "serve"]


def test_every_command_has_help(capsys):
    code, out, _ = _cli(capsys, "--help")
    assert code == 0 and "Exit codes:" in out and "--root" in out
    assert set(COMMANDS) <= set(parser()._subparsers._group_actions[0].choices)
    for command in COMMANDS + ["keys init", "keys show", "keys publish"]:
        code, out, _ = _cli(capsys, *command.split(), "--help")
        assert code == 0 and out.startswith(f"usage: python -m autograder {command}"), command


@pytest.mark.parametrize("argv, message", [
    ([], ""),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["release", "99_nothing"], "no lesson named '99_nothing'"),
    (["--root", "/no/such/course", "release"], "course folder /no/such/course does not exist"),
    (["release", "--root", "/no/such/course"], "course folder /no/such/course does not exist"),
    (["grade", "nobody"], "no submissions from 'nobody'"),
    (["build", "no_such_script.py", "--out", "x.ipynb"], "no such file: no_such_script.py"),
    (["check", "missing.ipynb"], "no such file: missing.ipynb"),
    (["keys"], "the following arguments are required"),
])
def test_bad_input_is_one_error_line_and_exit_2(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2
    if argv:
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_scores_of_an_unknown_student(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    assert _cli(capsys, "--root", tmp_path, "scores", "ada")[2].startswith("error: no gradebook at")
    assert not (tmp_path / "gradebook.db").exists()


def test_module_entry_point(tmp_path):
    """From any folder, `python -m autograder` (run from the repository's path) exits 2 with one
    error line for a folder that does not exist; --help exits 0."""
    env = {"PYTHONPATH": str(course.REPOSITORY), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "autograder"]
    bad = subprocess.run(run + ["--root", str(tmp_path / "x"), "release"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == f"error: course folder {tmp_path / 'x'} does not exist\n"
    helped = subprocess.run(run + ["--help"], cwd=tmp_path, env=env, capture_output=True)
    assert helped.returncode == 0


# ------------------------------------------------------------------------------- release
@pytest.mark.slow
def test_release_of_every_lesson_equals_the_committed_notebooks(scratch_course, capsys):
    """The release command, run for real on a copy of the course: every notebook it writes is
    byte-identical to the committed one, and running it again changes nothing."""
    lessons = nbt.lesson_ids()
    root = scratch_course(*lessons)
    assert _cli(capsys, "--root", root, "release")[0] == 0
    stale = [f"{path(nbt.REPO, lesson).relative_to(nbt.REPO)} is stale: "
             f"run `python -m autograder release {lesson}`"
             for lesson in lessons for path in (course.source_path, course.release_path)
             if path(root, lesson).read_bytes() != path(nbt.REPO, lesson).read_bytes()]
    assert not stale, "\n".join(stale)
    code, out, _ = _cli(capsys, "--root", root, "release")
    rewritten = [line for line in out.splitlines() if line.startswith(("released ", "built "))]
    assert code == 0 and not rewritten, rewritten


@pytest.mark.slow
def test_in_process_release_equals_nbgraders_command(scratch_course):
    """`release` runs nbgrader's converter in-process; `nbgrader generate_assignment` writes the
    same bytes and records the same graded cells."""
    root = scratch_course(LESSON, parts=("solutions",))
    ours = generate(root, LESSON).read_bytes()
    pipeline.nbgrader("generate_assignment", LESSON, "--force", root=root)
    assert course.release_path(root, LESSON).read_bytes() == ours


# ------------------------------------------------------------------------------- grading
def _broken_submission(root):
    nb = pipeline.solved_release(LESSON, root)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "llama_parameter_count":
            cell.source = "def llama_parameter_count(cfg):\n    return cfg[  # syntax error"
        if grade_id == "monthly_gpu_cost":
            cell.source = "raise RuntimeError('the student broke this cell')"
    return nb


@pytest.mark.slow
def test_autograde_scores_and_missing_work(scratch_course, capsys):
    root = scratch_course(LESSON, "12_knowledge_check", parts=("solutions",))
    pipeline.release(root, only=[LESSON])
    pipeline.submit("alice", LESSON, pipeline.solved_release(LESSON, root), root)
    pipeline.submit("bob", LESSON, _broken_submission(root), root)
    pipeline.autograde("alice", LESSON, root)
    # the command line grades what bob submitted and reports the rest as missing
    code, out, _ = _cli(capsys, "--root", root, "grade", "bob")
    assert code == 0 and "12_knowledge_check           no submission" in out

    alice = {r.exercise: r for r in pipeline.scores("alice", root) if r.assignment == LESSON}
    assert {k: r.score for k, r in alice.items()} == {"test_decode_tokens_per_s_bound": 2,
                                                      "test_llama_parameter_count": 2,
                                                      "test_timed_greedy": 4,
                                                      "test_monthly_gpu_cost": 1}

    # A syntax error and a raising cell cost only their own exercises.
    bob = {r.exercise: r.score for r in pipeline.scores("bob", root) if r.assignment == LESSON}
    assert bob == {"test_decode_tokens_per_s_bound": 2, "test_llama_parameter_count": 0,
                   "test_timed_greedy": 4, "test_monthly_gpu_cost": 0}

    # Lessons without a submission are reported as missing, not as a crash.
    rows = pipeline.scores("alice", root)
    assert {r.assignment for r in rows if r.status == "missing"} == {"12_knowledge_check"}
    code, out, _ = _cli(capsys, "--root", root, "scores", "alice")
    assert code == 0 and "MISSING" in out and "9 / 9" in out
    code, _, err = _cli(capsys, "--root", root, "scores", "carol")
    assert code == 2 and err.startswith("error: student 'carol' is not in the gradebook")

    # Feedback explains the grading to the student.
    pipeline.feedback("bob", LESSON, root)
    assert list((root / "feedback" / "bob" / LESSON).glob("*.html"))


def test_answer_code_strips_markers():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert pipeline.answer_code(source) == "def f():\n    return 1"


def test_solved_release_fills_every_answer_cell():
    nb = pipeline.solved_release(LESSON, nbt.REPO)
    answers = nbt.cells(nb, "solution")
    assert answers and all("NotImplementedError" not in c.source for c in answers)
    assert nbformat.validate(nb) is None
