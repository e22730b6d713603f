"""The completion rule read from an nbgrader gradebook: ``progress``, ``certify``, idempotency,
demo.

Each test works on a copy of a small gradebook built with nbgrader's own ``Gradebook`` API (three
assignments: two notebooks and the knowledge check), so nothing depends on the full course.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from autograder.certificates import keys, registry, trust
from autograder.certificates.cli import demo_certify
from autograder.certificates.issuing import certify_all, certify_student
from autograder.certificates.progress import GradebookError, student_progress
from autograder.certificates.rule import DEFAULT_RULE, CompletionRule
from autograder.certificates.verifier import verify_credential
from autograder.cli import main

REPO = Path(__file__).resolve().parent.parent
# nbgrader's add_submission trips a harmless SQLAlchemy autoflush warning
pytestmark = pytest.mark.filterwarnings("ignore:Object of type:Warning")
POINTS = {"00_intro": {"ex1": 6, "ex2": 4}, "01_quant": {"ex1": 3},
          "12_knowledge_check": {f"q{i}": 1 for i in range(1, 6)}}


def _check(*scores):
    return {f"q{i}": score for i, score in enumerate(scores, start=1)}


STUDENTS = {
    # id: (first, last, {assignment: {cell: score}}); a missing assignment = no submission
    "ada": ("Ada", "Lovelace", {"00_intro": {"ex1": 6, "ex2": 4}, "01_quant": {"ex1": 3},
                                "12_knowledge_check": _check(1, 1, 1, 1, 1)}),
    "edge": ("Edgar", "Exact", {"00_intro": {"ex1": 6, "ex2": 1}, "01_quant": {"ex1": 2.1},  # 70%
                                "12_knowledge_check": _check(1, 1, 1, 1, 0)}),
    "bob": ("Bob", "", {"00_intro": {"ex1": 6, "ex2": 0.9}, "01_quant": {"ex1": 3},  # 69% in 00
                        "12_knowledge_check": _check(1, 1, 1, 0, 0)}),  # 3 of 5
    "cy": ("Cy", "Nomark", {"00_intro": {"ex1": 6, "ex2": 4}}),  # missing work
}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A course root with solutions/ folders and a gradebook; copied for each test."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("course")
    for assignment in POINTS:
        (root / "solutions" / assignment).mkdir(parents=True)
        (root / "solutions" / assignment / f"{assignment}.ipynb").write_text("{}")
    # nbgrader runs the `alembic` command of its own environment when it creates a gradebook
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            for assignment, cells in POINTS.items():
                gb.add_assignment(assignment)
                gb.add_notebook(assignment, assignment)
                for cell, points in cells.items():
                    gb.add_grade_cell(cell, assignment, assignment, max_score=points,
                                      cell_type="code")
            for sid, (first, last, work) in STUDENTS.items():
                gb.add_student(sid, first_name=first, last_name=last)
                for assignment, scores in work.items():
                    gb.add_submission(assignment, sid)
                    for cell, score in scores.items():
                        grade = gb.find_grade(cell, assignment, assignment, sid)
                        grade.auto_score, grade.needs_manual_grade = score, False
                    gb.db.commit()
    return root


@pytest.fixture()
def course(template, tmp_path):
    root = tmp_path / "course"
    shutil.copytree(template, root)
    return root


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return keys.init(tmp_path_factory.mktemp("issuer") / "issuer",
                     base_url="https://certs.example.org", name="Test Course")


def published(issuer):
    status = keys.signed_status_list(issuer)
    return [trust.entry_for(issuer, {issuer.status_list_url: status})]


# ---------------------------------------------------------------------------- the rule
def test_rule_covers_every_assignment_of_the_real_course():
    from autograder.pipeline import assignments

    required = DEFAULT_RULE.required_assignments(REPO)
    assert required == assignments(REPO) and "12_knowledge_check" in required
    assert DEFAULT_RULE.min_fraction == 0.70 and DEFAULT_RULE.knowledge_check_min_points == 4
    assert DEFAULT_RULE.needed("12_knowledge_check", 5) == 4 and DEFAULT_RULE.needed("x", 10) == 7


def test_complete_student(course):
    p = student_progress(course, "ada")
    assert p.complete and p.full_name == "Ada Lovelace" and p.missing == []
    assert [s.name for s in p.statuses] == list(POINTS)


def test_exactly_the_threshold_passes(course):
    assert student_progress(course, "edge").complete


def test_below_the_rule_says_why(course, capsys):
    p = student_progress(course, "bob")
    assert not p.complete
    reasons = {s.name: s.reason for s in p.missing}
    assert reasons == {"00_intro": "needs 7 points, has 6.9",
                       "12_knowledge_check": "needs 4 points, has 3"}
    assert main(["progress", "bob", "--course-root", str(course)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "12_knowledge_check" in out and "needs 4 points, has 3" in out
    assert "Not complete yet - missing: 00_intro, 12_knowledge_check" in out


def test_missing_work_and_unknown_student(course, capsys):
    reasons = {s.name: s.reason for s in student_progress(course, "cy").missing}
    assert reasons == {"01_quant": "no graded submission",
                       "12_knowledge_check": "no graded submission"}
    with pytest.raises(GradebookError, match="not in the gradebook"):
        student_progress(course, "nobody")
    assert main(["progress", "nobody", "--course-root", str(course)]) == 2
    assert "error: student 'nobody' is not in the gradebook" in capsys.readouterr().err


def test_assignment_never_graded_and_manual_grading(course):
    from nbgrader.api import Gradebook

    (course / "solutions" / "02_new").mkdir()
    (course / "solutions" / "02_new" / "02_new.ipynb").write_text("{}")
    statuses = {s.name: s for s in student_progress(course, "ada").statuses}
    assert not statuses["02_new"].done and "not in the gradebook" in statuses["02_new"].reason
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("ex1", "01_quant", "01_quant", "ada")
        grade.needs_manual_grade = True
        gb.db.commit()
    statuses = {s.name: s for s in student_progress(course, "ada").statuses}
    assert statuses["01_quant"].reason == "waiting for manual grading"


def test_the_rule_is_configurable(course):
    lenient = dataclasses.replace(DEFAULT_RULE, min_fraction=0.5, knowledge_check_min_points=3)
    assert student_progress(course, "bob", lenient).complete
    only_intro = CompletionRule(assignments=("00_intro",))
    assert student_progress(course, "cy", only_intro).complete


def test_progress_of_everyone(course, capsys):
    assert main(["progress", "--course-root", str(course)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ada") and "complete" in line for line in lines)
    assert any(line.startswith("bob") and "missing 00_intro, 12_knowledge_check" in line
               for line in lines)


# ----------------------------------------------------------------------------- certify
def test_certify_issues_once_and_only_to_eligible_students(course, issuer, tmp_path):
    out = tmp_path / "out"
    results = {r.student: r for r in certify_all(course, issuer, out)}
    assert {s: r.status for s, r in results.items()} == {
        "ada": "issued", "edge": "issued", "bob": "incomplete", "cy": "incomplete"}
    assert not (out / "bob").exists() and not (out / "cy").exists()
    assert registry.for_student(course / "gradebook.db", "bob") is None

    folder = out / "ada" / "certificate"
    cred = json.loads((folder / "credential.json").read_text())
    assert (folder / "certificate.pdf").read_bytes().startswith(b"%PDF")
    links_txt = (folder / "links.txt").read_text()
    assert "linkedin.com/profile/add" in links_txt and "https://certs.example.org/c/" in links_txt
    assert "#vc=" in links_txt and registry.for_student(course / "gradebook.db", "ada").short_id
    assert cred["credentialSubject"]["identifier"][0]["identityHash"] == "Ada Lovelace"
    assert "70%" in cred["credentialSubject"]["achievement"]["criteria"]["narrative"]
    assert cred["credentialStatus"]["statusListCredential"] == "https://certs.example.org/status/1"
    assert verify_credential(json.dumps(cred), published(issuer)).valid

    # Idempotent: a second run issues nothing and keeps the same credential ...
    again = {r.student: r for r in certify_all(course, issuer, out)}
    assert again["ada"].status == "already certified"
    assert again["ada"].credential["id"] == cred["id"]
    assert len(registry.all_issued(course / "gradebook.db")) == 2
    # ... and re-writes lost files from the stored credential, not a new signature.
    (folder / "credential.json").unlink()
    certify_student(course, "ada", issuer, out)
    assert json.loads((folder / "credential.json").read_text()) == cred


def test_certify_cli_and_revoked_students_are_not_reissued(course, issuer, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["certify", "--course-root", str(course), "--issuer-dir", str(issuer.directory),
            "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 issued, 0 already certified, 2 not complete" in text and "bob: not certified" in text
    cred_id = registry.for_student(course / "gradebook.db", "ada").credential_id
    status_before = (issuer.directory / keys.STATUS_FILE).read_text()
    try:
        assert main(["revoke", cred_id, "--reason", "test", "--issuer-dir", str(issuer.directory),
                     "--course-root", str(course)]) == 0
        assert registry.for_student(course / "gradebook.db", "ada").revoked_at
        cred = registry.for_student(course / "gradebook.db", "ada").credential
        assert verify_credential(json.dumps(cred), published(issuer)).verdict == "REVOKED"
        assert main(args) == 0
        assert "ada: revoked" in capsys.readouterr().out
    finally:  # the issuer fixture is shared by the module
        (issuer.directory / keys.STATUS_FILE).write_text(status_before)


def test_a_lesson_added_later_is_required_of_new_students_only(course, issuer, tmp_path):
    """How lesson 13 (the capstone) joined the course: a new graded notebook in solutions/ is
    required for every certificate issued from then on; one issued before stays what it was -
    valid, and not issued again."""
    out = tmp_path / "out"
    assert certify_student(course, "ada", issuer, out).status == "issued"
    cred = registry.for_student(course / "gradebook.db", "ada").credential
    (course / "solutions" / "13_capstone").mkdir()
    (course / "solutions" / "13_capstone" / "13_capstone.ipynb").write_text("{}")
    progress = student_progress(course, "edge")
    assert [s.name for s in progress.statuses][-1] == "13_capstone" and not progress.complete
    assert {s.name: s.reason for s in progress.missing} == {
        "13_capstone": "not in the gradebook yet (never released/graded)"}
    assert certify_student(course, "edge", issuer, out).status == "incomplete"
    again = certify_student(course, "ada", issuer, out)
    assert again.status == "already certified" and again.credential == cred
    assert verify_credential(json.dumps(cred), published(issuer)).valid


def test_missing_gradebook_is_an_error_not_a_new_database(tmp_path, capsys):
    (tmp_path / "solutions" / "00_a").mkdir(parents=True)
    (tmp_path / "solutions" / "00_a" / "00_a.ipynb").write_text("{}")
    assert main(["progress", "x", "--course-root", str(tmp_path)]) == 2
    assert "no gradebook" in capsys.readouterr().err
    assert not (tmp_path / "gradebook.db").exists()


# -------------------------------------------------------------------------------- demo
def test_demo_certify_uses_a_throwaway_key_and_verifies(course, tmp_path, capsys):
    out = tmp_path / "build"
    assert demo_certify(course, "ada", out) == 0
    text = capsys.readouterr().out
    assert "DEMO: Ada Lovelace" in text and "VALID:" not in text and "already certified" in text
    cred = json.loads((out / "ada" / "certificate" / "credential.json").read_text())
    assert "DEMO KEY" in cred["issuer"]["name"]
    assert not list(out.rglob("*.pem")), "the demo key must not be left in the output"
    key_dirs = [line for line in text.splitlines()
                if "throwaway DEMO issuer" in line and " created in " in line]
    assert key_dirs and not Path(key_dirs[0].split(" created in ")[1].split(" ")[0]).exists()
    # the course gradebook records no demo credential
    assert registry.all_issued(course / "gradebook.db") == []
    # a second demo run replaces the first run's files with a fresh, valid credential
    assert demo_certify(course, "ada", out) == 0
    assert "DEMO: Ada Lovelace" in capsys.readouterr().out
    # the printed re-check command works: exit 3, DEMO
    assert main(["verify", str(out / "ada" / "certificate" / "credential.json"),
                 "--demo-list", str(out / "demo-issuers.json")]) == 3


def test_demo_certify_reports_an_incomplete_student(course, tmp_path, capsys):
    assert demo_certify(course, "bob", tmp_path / "build") == 1
    assert "does not meet the completion rule" in capsys.readouterr().out
