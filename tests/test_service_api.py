"""The course service's HTTP surface and its guarantees, against a real SQLite file and a real
SMTP server (aiosmtpd), through FastAPI's TestClient.

Fast part (no grading): the migrations create exactly the models' schema; sign-up and e-mail
confirmation; one-time, expiring links; no account enumeration; CSRF; every non-public route
needs a log-in; another student's submission is 404; API token, size, format, lesson and rate
errors; admin pages refused to students; the grade sheet escapes formulas.

Grading part (one module-scoped service whose queue really grades, in bubblewrap): a row left
``grading`` by a stopped service and malformed notebooks put in the database before it starts;
then one student's 13 solutions through the API. Checked: nothing lost, malformed files graded 0
with a message, the certificate issued and valid, key rotation (retired key in did.json with its
date, new credentials by the new key, old ones still valid), revocation (the status bit, the
verdict), and the audit log.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from starlette.routing import Mount, Route

from tests.service_support import LESSONS, REPO, MailBox, solution

pytestmark = pytest.mark.xdist_group("service_api")

ADMIN = "admin@example.org"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
TOKEN = re.compile(r'id="api-token">([^<]+)<')
# Routes anyone may GET without logging in (path templates as the app declares them).
PUBLIC = {"/", "/about", "/check-email", "/auth", "/healthz", "/api/openapi.json",
          "/.well-known/did.json", "/status/1", "/trust.json", "/c/{short_id}",
          "/c/{short_id}.json", "/c/{short_id}.pdf", "/c/{short_id}/qr.svg",
          "/verify/trusted-issuers.js", "/verify/trusted-issuers.json"}
PUBLIC_POST = {"/signup", "/login"}


# ------------------------------------------------------------------------------------ set-up
@pytest.fixture(scope="module")
def mailbox():
    box = MailBox().start()
    yield box
    box.stop()


def _config(data: Path, mailbox: MailBox, **limits):
    from autograder.service.config import ServiceConfig

    config = ServiceConfig(base_url="http://127.0.0.1:8000", data_dir=data, mail=mailbox.url,
                           admin_emails=(ADMIN,), workers=2)
    for name, value in limits.items():
        setattr(config.limits, name, value)
    return config


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=False)


def _csrf(client, path="/") -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return CSRF.search(response.text).group(1)


def _sign_up(client, mailbox, name: str, email: str, count: int = 1) -> str:
    """Sign up through the form and follow the e-mailed link; the browser is then logged in."""
    response = client.post("/signup", data={"name": name, "email": email,
                                            "csrf": _csrf(client)})
    assert response.status_code == 303 and response.headers["location"] == "/check-email", \
        response.text
    link = mailbox.link(email, count)
    response = client.get(link.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    return link


def _api_token(client) -> str:
    response = client.post("/token", data={"csrf": _csrf(client, "/dashboard")})
    assert response.status_code == 200
    return TOKEN.search(response.text).group(1)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _upload(client, token: str, lesson: str, data: bytes, name: str | None = None):
    return client.post("/api/submissions", headers=_bearer(token), data={"lesson": lesson},
                       files={"notebook": (name or f"{lesson}.ipynb", data,
                                           "application/x-ipynb+json")})


@pytest.fixture(scope="module")
def fast(tmp_path_factory, mailbox):
    """A service whose queue is not started (nothing is graded): the HTTP surface only."""
    from autograder.service.app import create_app

    data = tmp_path_factory.mktemp("service-fast")
    app = create_app(_config(data, mailbox, forms_per_minute=1000), start_queue=False)
    return app


@pytest.fixture()
def student(fast, mailbox):
    """A fresh confirmed, logged-in student of the fast service: (client, e-mail, API token)."""
    student.count = getattr(student, "count", 0) + 1
    email = f"student{student.count}@example.org"
    client = _client(fast)
    _sign_up(client, mailbox, f"Student {student.count}", email)
    return client, email, _api_token(client)


# ---------------------------------------------------------------------------- the database
def test_migrations_create_exactly_the_models_schema(fast):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from autograder.service.models import Base

    engine = fast.state.db.engine
    assert str(engine.url).startswith("sqlite:///") and Path(engine.url.database).is_file()
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables and "alembic_version" in tables
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


# ------------------------------------------------------------------- sign-up and log-in links
def test_sign_up_sends_a_confirmation_link_by_smtp_that_logs_in(fast, mailbox):
    client = _client(fast)
    _sign_up(client, mailbox, "  Grace   Hopper ", "Grace@Example.org".lower())
    message = mailbox.wait_for("grace@example.org")
    assert "Confirm your e-mail address" in message["Subject"]
    assert "Hello Grace Hopper" in message.get_content()
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Hello Grace Hopper" in page.text
    assert "Make my API token" in page.text
    cookie = next(c for c in client.cookies.jar if c.name == "inferlab_session")
    assert cookie.has_nonstandard_attr("HttpOnly") or cookie._rest.get("HttpOnly") is not None


def test_links_work_once_and_expire(fast, mailbox):
    from sqlalchemy import update

    from autograder.service.models import LoginLink, utcnow

    client = _client(fast)
    link = _sign_up(client, mailbox, "Once Only", "once@example.org")
    path = link.split("127.0.0.1:8000", 1)[1]
    again = _client(fast).get(path)
    assert again.status_code == 400 and "already used" in again.text
    assert "inferlab_session" not in again.cookies
    assert _client(fast).get("/auth?token=not-a-token").status_code == 400
    assert _client(fast).get("/auth").status_code == 400

    other = _client(fast)     # a log-in link, made stale in the database before it is used
    other.post("/login", data={"email": "once@example.org", "csrf": _csrf(other)})
    stale = mailbox.link("once@example.org", 2)
    assert "log in" in mailbox.wait_for("once@example.org", 2).get_content()
    with fast.state.db.session() as s:
        s.execute(update(LoginLink).where(LoginLink.used_at.is_(None))
                  .values(expires_at=utcnow().replace(year=2000)))
    expired = other.get(stale.split("127.0.0.1:8000", 1)[1])
    assert expired.status_code == 400 and "expired" in expired.text
    assert other.get("/dashboard").status_code == 303


def test_log_in_does_not_reveal_who_has_an_account(fast, mailbox):
    _sign_up(_client(fast), mailbox, "Known Person", "known@example.org")
    answers = []
    for email in ("known@example.org", "nobody@example.org"):
        client = _client(fast)
        response = client.post("/login", data={"email": email, "csrf": _csrf(client)})
        answers.append((response.status_code, response.headers.get("location"), response.text))
    assert answers[0] == answers[1] == (303, "/check-email", "")
    mailbox.wait_for("known@example.org", 2)           # the known address gets its link
    assert mailbox.to("nobody@example.org") == []     # the unknown one nothing, and no account
    from sqlalchemy import select

    from autograder.service.models import Student
    with fast.state.db.session() as s:
        assert s.scalar(select(Student).where(Student.email == "nobody@example.org")) is None


def test_forms_without_the_right_csrf_token_are_refused(fast, student):
    client = _client(fast)
    client.get("/")
    form = {"name": "Eve", "email": "eve@example.org"}
    assert client.post("/signup", data=form).status_code == 403
    assert client.post("/signup", data={**form, "csrf": "forged"}).status_code == 403
    assert client.post("/login", data={"email": "eve@example.org", "csrf": ""}).status_code == 403
    logged_in, _, _ = student
    for path in ("/token", "/logout"):
        assert logged_in.post(path, data={"csrf": "forged"}).status_code == 403, path
    files = {"notebook": ("x.ipynb", solution(LESSONS[0]).read_bytes())}
    assert logged_in.post("/submit", data={"lesson": LESSONS[0], "csrf": "forged"},
                          files=files).status_code == 403
    assert logged_in.get("/dashboard").status_code == 200        # still logged in


def _example_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_non_public_route_needs_a_log_in(fast):
    routes = [r for r in fast.routes if isinstance(r, Route)]
    declared = {r.path for r in routes}
    assert PUBLIC | PUBLIC_POST <= declared, f"stale list: {(PUBLIC | PUBLIC_POST) - declared}"
    assert any(isinstance(r, Mount) and r.path == "/verify" for r in fast.routes)
    client = _client(fast)
    checked = []
    for route in routes:
        for method in sorted(route.methods - {"HEAD"}):
            if (method == "GET" and route.path in PUBLIC) or \
                    (method == "POST" and route.path in PUBLIC_POST):
                continue
            response = client.request(method, _example_path(route.path))
            if route.path.startswith("/api/"):
                assert response.status_code == 401, (method, route.path, response.status_code)
            else:
                assert response.status_code == 303, (method, route.path, response.status_code)
                assert urlsplit(response.headers["location"]).path == "/", route.path
            checked.append(f"{method} {route.path}")
    # the private surface the service declares (a new route is checked by the loop above)
    assert {"GET /dashboard", "POST /token", "POST /submit", "GET /submissions/{sid}",
            "POST /api/submissions", "GET /api/submissions/{sid}", "GET /api/progress",
            "GET /admin", "POST /admin/revoke", "POST /admin/rotate",
            "GET /admin/grades.csv", "POST /logout"} <= set(checked)


# --------------------------------------------------------------------------- submissions
def test_another_students_submission_is_not_found(fast, mailbox, student):
    owner, _, token = student
    response = _upload(owner, token, LESSONS[0], solution(LESSONS[0]).read_bytes())
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "queued" and answer["lesson"] == LESSONS[0]
    assert answer["url"].endswith(f"/submissions/{answer['id']}")
    sid = answer["id"]
    assert owner.get(f"/submissions/{sid}").status_code == 200
    assert owner.get(f"/api/submissions/{sid}", headers=_bearer(token)).json()["id"] == sid

    stranger = _client(fast)
    _sign_up(stranger, mailbox, "Nosy Neighbour", "nosy@example.org")
    stranger_token = _api_token(stranger)
    assert stranger.get(f"/submissions/{sid}").status_code == 404
    assert stranger.get(f"/api/submissions/{sid}",
                        headers=_bearer(stranger_token)).status_code == 404
    assert owner.get("/api/submissions/999999", headers=_bearer(token)).status_code == 404


def test_api_tokens_are_checked(fast, student):
    client, _, token = student
    notebook = solution(LESSONS[0]).read_bytes()
    response = client.post("/api/submissions", data={"lesson": LESSONS[0]},
                           files={"notebook": ("a.ipynb", notebook)})
    assert response.status_code == 401 and "API token" in response.json()["detail"]
    assert _upload(client, "wrong-" + token, LESSONS[0], notebook).status_code == 401
    assert client.get("/api/progress", headers={"Authorization": token}).status_code == 401
    replaced = _api_token(client)                 # a new token replaces the old one
    assert client.get("/api/progress", headers=_bearer(token)).status_code == 401
    progress = client.get("/api/progress", headers=_bearer(replaced)).json()
    assert [p["lesson"] for p in progress["lessons"]] == LESSONS
    assert progress["complete"] is False and progress["certificate"] is None


def test_uploads_too_large_not_a_notebook_or_unknown_lesson_are_refused(fast, student):
    client, _, token = student
    limit = fast.state.config.limits.max_upload_bytes
    notebook = solution(LESSONS[0]).read_bytes()
    big = notebook[:-2] + b' ' * (limit + 1 - len(notebook)) + notebook[-2:]
    assert _upload(client, token, LESSONS[0], big).status_code == 413
    huge = _upload(client, token, LESSONS[0], notebook + b" " * (limit + 200_000))
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
    for data in (b"print('hello')\n", json.dumps({"cells": "no"}).encode(), b"\xff\xfe\x00"):
        refused = _upload(client, token, LESSONS[0], data)
        assert refused.status_code == 422 and "not a Jupyter notebook" in refused.json()["detail"]
    unknown = _upload(client, token, "99_no_such_lesson", notebook)
    assert unknown.status_code == 422 and "unknown lesson" in unknown.json()["detail"]
    missing = client.post("/api/submissions", headers=_bearer(token), data={"lesson": LESSONS[0]})
    assert missing.status_code == 422
    from sqlalchemy import func, select

    from autograder.service.models import Student, Submission
    with fast.state.db.session() as s:
        me = s.scalar(select(Student).where(Student.email == student[1]))
        assert s.scalar(select(func.count(Submission.id))
                        .where(Submission.student_id == me.id)) == 0


def test_too_many_submissions_are_rate_limited(fast, student):
    client, _, token = student
    notebook = solution(LESSONS[0]).read_bytes()
    allowed = fast.state.config.limits.submissions_per_minute
    for _ in range(allowed):
        assert _upload(client, token, LESSONS[0], notebook).status_code == 202
    refused = _upload(client, token, LESSONS[0], notebook)
    assert refused.status_code == 429 and "too many" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    page = client.post("/submit", data={"lesson": LESSONS[0], "csrf": _csrf(client, "/dashboard")},
                       files={"notebook": ("x.ipynb", notebook)})
    assert page.status_code == 429


def test_admin_pages_are_refused_to_students(fast, student):
    client, _, _ = student
    csrf = _csrf(client, "/dashboard")
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/grades.csv").status_code == 403
    assert client.post("/admin/rotate", data={"csrf": csrf}).status_code == 403
    revoke = client.post("/admin/revoke", data={"csrf": csrf, "credential_id": "x"})
    assert revoke.status_code == 403
    with fast.state.db.session() as s:
        from sqlalchemy import select

        from autograder.service.models import IssuerKey
        assert [k.id for k in s.scalars(select(IssuerKey))] == ["key-1"]


@pytest.fixture()
def admin_client(fast, mailbox):
    client = _client(fast)
    if not hasattr(admin_client, "link"):
        admin_client.link = _sign_up(client, mailbox, "Course Staff", ADMIN)
    else:
        client.post("/login", data={"email": ADMIN, "csrf": _csrf(client)})
        admin_client.logins = getattr(admin_client, "logins", 1) + 1
        link = mailbox.link(ADMIN, admin_client.logins)
        assert client.get(link.split("127.0.0.1:8000", 1)[1]).status_code == 303
    assert client.get("/admin").status_code == 200
    return client


FORMULAS = ["=HYPERLINK(1)", "+1+2", "-3+4", "@SUM(1)"]


def test_the_grade_sheet_lists_students_and_escapes_formulas(fast, mailbox, admin_client):
    for i, name in enumerate(FORMULAS):
        _sign_up(_client(fast), mailbox, name, f"formula{i}@example.org")
    _sign_up(_client(fast), mailbox, "Plain Name", "plain@example.org")
    sheet = admin_client.get("/admin/grades.csv")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    assert "attachment" in sheet.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(sheet.text)))
    assert rows[0] == ["name", "email", *LESSONS, "complete", "certificate"]
    by_email = {row[1]: row for row in rows[1:]}
    for i, name in enumerate(FORMULAS):
        row = by_email[f"formula{i}@example.org"]
        assert row[0] == "'" + name
        assert row[2:] == [""] * len(LESSONS) + ["no", ""]
    assert by_email["plain@example.org"][0] == "Plain Name"
    for row in rows:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


def test_the_grade_sheet_escapes_formulas_in_email_addresses(fast, mailbox, admin_client):
    _sign_up(_client(fast), mailbox, "Formula Mail", "=1+2@example.org")
    rows = list(csv.reader(io.StringIO(admin_client.get("/admin/grades.csv").text)))
    cells = [row[1] for row in rows[1:] if "1+2@example.org" in row[1]]
    assert cells and all(cell[:1] not in ("=", "+", "-", "@") for cell in cells), cells


# ----------------------------------------------------------------------- the grading service
def _wait_until_graded(db, timeout: float = 600) -> None:
    from sqlalchemy import func, select

    from autograder.service.models import Submission
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            waiting = s.scalar(select(func.count(Submission.id))
                               .where(Submission.status.in_(("queued", "grading"))))
        if not waiting:
            return
        assert time.monotonic() < deadline, f"{waiting} submissions still waiting"
        time.sleep(0.5)


def _without_answers(lesson: str) -> bytes:
    notebook = nbformat.read(solution(lesson), as_version=4)
    notebook.cells = [c for c in notebook.cells
                      if not c.metadata.get("nbgrader", {}).get("solution")]
    return nbformat.writes(notebook).encode()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, mailbox):
    """A service with a real grading queue. Before it starts, the database holds what a stopped
    service left behind: one row ``grading`` (interrupted) and malformed uploads, queued. Then a
    student signs up and submits every lesson's solution through the API."""
    from autograder.service import security
    from autograder.service.app import create_app
    from autograder.service.db import Database
    from autograder.service.models import Student, Submission, utcnow

    data = tmp_path_factory.mktemp("service-graded")
    config = _config(data, mailbox, submissions_per_minute=100)
    database = Database(config.db_url)
    database.migrate()
    (data / "submissions").mkdir()
    early = {"interrupted": ("grading", LESSONS[0], solution(LESSONS[0]).read_bytes()),
             "json_not_notebook": ("queued", LESSONS[0], b'{"hello": "world"}'),
             "not_json": ("queued", LESSONS[1], b"\x00\x01 not a notebook"),
             "no_answer_cells": ("queued", LESSONS[0], _without_answers(LESSONS[0]))}
    ids = {}
    with database.session() as s:
        seed = Student(name="Seeded Student", email="seeded@example.org", created_at=utcnow(),
                       confirmed_at=utcnow(), token_hash=security.digest("seed-token"))
        s.add(seed)
        s.flush()
        for what, (status, lesson, blob) in early.items():
            row = Submission(student_id=seed.id, lesson=lesson, filename=f"{what}.ipynb",
                             sha256="0" * 64, size=len(blob), status=status,
                             submitted_at=utcnow(), attempts=1 if status == "grading" else 0)
            s.add(row)
            s.flush()
            (data / "submissions" / f"{row.id}.ipynb").write_bytes(blob)
            ids[what] = row.id
        seed_id = seed.id
    database.engine.dispose()

    app = create_app(config)
    with _client(app) as client:            # the lifespan starts the grading queue
        _sign_up(client, mailbox, "Ada Lovelace", "ada@example.org")
        token = _api_token(client)
        for lesson in LESSONS:
            response = _upload(client, token, lesson, solution(lesson).read_bytes())
            assert response.status_code == 202, response.text
            ids[lesson] = response.json()["id"]
        _wait_until_graded(app.state.db)
        yield {"app": app, "client": client, "token": token, "ids": ids, "seed_id": seed_id}


def _trusted(client) -> list[dict]:
    listed = client.get("/trust.json").json()
    assert listed["format"] == "inferlab-trusted-issuers/2" and len(listed["issuers"]) == 1
    return listed["issuers"]


def test_a_submission_left_grading_by_a_stopped_service_is_graded_after_restart(graded):
    row = graded["client"].get(f"/api/submissions/{graded['ids']['interrupted']}",
                               headers=_bearer("seed-token")).json()
    assert row["status"] == "graded" and row["score"] == row["max_score"] > 0, row


def test_malformed_notebooks_are_graded_zero_with_a_message(graded):
    for what in ("json_not_notebook", "not_json", "no_answer_cells"):
        row = graded["client"].get(f"/api/submissions/{graded['ids'][what]}",
                                   headers=_bearer("seed-token")).json()
        assert row["status"] in ("graded", "error") and row["graded_at"], (what, row)
        assert not row["score"], (what, row)
        messages = [row["error"], *row["notes"], *(t["message"] or "" for t in row["tests"])]
        assert any(m.strip() for m in messages), (what, row)


def test_every_lesson_is_graded_and_the_certificate_issued(graded):
    client, token = graded["client"], graded["token"]
    for lesson in LESSONS:
        row = client.get(f"/api/submissions/{graded['ids'][lesson]}", headers=_bearer(token)).json()
        assert row["status"] == "graded" and row["score"] == row["max_score"] > 0, row
        assert row["tests"] and all(t["status"] == "passed" for t in row["tests"]), row
    progress = client.get("/api/progress", headers=_bearer(token)).json()
    assert progress["complete"] and all(p["done"] for p in progress["lessons"])
    short = progress["certificate"].rsplit("/c/", 1)[1]
    page = client.get(f"/c/{short}")
    assert page.status_code == 200 and "VALID" in page.text and "Ada Lovelace" in page.text

    from autograder.certificates.verifier import verify_credential
    document = client.get(f"/c/{short}.json").json()
    assert verify_credential(document, _trusted(client)).verdict == "VALID"
    assert document["proof"]["verificationMethod"].endswith("#key-1")
    # nothing lost: every row in the database was graded (or refused as unreadable)
    from sqlalchemy import select

    from autograder.service.models import Submission
    with graded["app"].state.db.session() as s:
        statuses = {r.id: r.status for r in s.scalars(select(Submission))}
    assert sorted(statuses) == sorted(graded["ids"].values())
    assert set(statuses.values()) <= {"graded", "error"}


def _credential(app, student_id: int | None = None, email: str | None = None):
    from sqlalchemy import select

    from autograder.service.models import Credential, Student
    with app.state.db.session() as s:
        if email:
            student_id = s.scalar(select(Student).where(Student.email == email)).id
        return s.scalar(select(Credential).where(Credential.student_id == student_id))


def _graded_admin(graded, mailbox):
    client = _client(graded["app"])
    _sign_up(client, mailbox, "Course Staff", ADMIN, count=len(mailbox.to(ADMIN)) + 1)
    return client


def test_key_rotation_then_revocation_and_the_audit_log(graded, mailbox):
    """One story (the steps depend on each other): rotate the key - the old certificate stays
    valid, a new one is signed by the new key; revoke the old one - its status bit is set, it is
    REVOKED, the new one is not; every step is in the audit log."""
    _rotate_keys(graded, mailbox)
    _revoke(graded, mailbox)


def _rotate_keys(graded, mailbox):
    from autograder.certificates.verifier import verify_credential
    from autograder.service.models import Student
    from autograder.service.progress import criteria

    app, client = graded["app"], graded["client"]
    admin = _graded_admin(graded, mailbox)
    before = _credential(app, email="ada@example.org")
    time.sleep(1.1)      # dates have one-second resolution: retire strictly after the issue
    rotated = admin.post("/admin/rotate", data={"csrf": _csrf(admin, "/admin")})
    assert rotated.status_code == 303
    did = client.get("/.well-known/did.json").json()
    methods = {m["id"].rsplit("#", 1)[1]: m for m in did["verificationMethod"]}
    assert sorted(methods) == ["key-1", "key-2"]
    assert "revoked" in methods["key-1"] and "revoked" not in methods["key-2"]
    assert methods["key-1"]["revoked"] >= before.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(did["assertionMethod"]) == {m["id"] for m in did["verificationMethod"]}

    trusted = _trusted(client)
    assert verify_credential(before.document, trusted).verdict == "VALID"
    status = client.get("/status/1").json()
    assert status["proof"]["verificationMethod"].endswith("#key-2")
    with app.state.db.session() as s:                # a new certificate after the rotation
        fresh = app.state.issuer.issue(s, s.get(Student, graded["seed_id"]),
                                       criteria(REPO))
        fresh_document = fresh.document
    document = json.loads(fresh_document)
    assert document["proof"]["verificationMethod"].endswith("#key-2")
    assert verify_credential(fresh_document, _trusted(client)).verdict == "VALID"


def _revoke(graded, mailbox):
    from autograder.certificates import status_list
    from autograder.certificates.verifier import verify_credential
    from autograder.service.models import AuditEvent

    app, client = graded["app"], graded["client"]
    admin = _graded_admin(graded, mailbox)
    credential = _credential(app, email="ada@example.org")
    bits = status_list.decode(client.get("/status/1").json()["credentialSubject"]["encodedList"])
    assert not status_list.get_bit(bits, credential.status_index)
    response = admin.post("/admin/revoke", data={"csrf": _csrf(admin, "/admin"),
                                                 "credential_id": credential.id})
    assert response.status_code == 303
    listed = client.get("/status/1").json()
    bits = status_list.decode(listed["credentialSubject"]["encodedList"])
    assert status_list.get_bit(bits, credential.status_index)
    assert sum(bin(b).count("1") for b in bits) == 1
    assert "reason" not in json.dumps(listed).lower()
    assert verify_credential(credential.document, _trusted(client)).verdict == "REVOKED"
    page = client.get(f"/c/{credential.short_id}")
    assert page.status_code == 200 and "REVOKED" in page.text
    other = _credential(app, graded["seed_id"])            # issued after the rotation
    assert verify_credential(other.document, _trusted(client)).verdict == "VALID"
    rows = list(csv.reader(io.StringIO(admin.get("/admin/grades.csv").text)))
    ada = next(r for r in rows if r[1] == "ada@example.org")
    assert ada[-2:] == ["yes", ""]                         # complete, no certificate listed

    from sqlalchemy import select
    with app.state.db.session() as s:
        events = [(e.actor, e.action, e.subject) for e in s.scalars(select(AuditEvent))]
    actions = [a for _, a, _ in events]
    assert ("service", "issued", credential.id) in events
    assert (ADMIN, "revoked", credential.id) in events
    assert (ADMIN, "key-retired", f"{app.state.issuer.did}#key-1") in events
    assert (ADMIN, "key-created", f"{app.state.issuer.did}#key-2") in events
    assert ("service", "key-created", f"{app.state.issuer.did}#key-1") in events
    assert "exported-grades" in actions


@pytest.mark.slow
def test_submissions_survive_a_real_stop_of_the_service(tmp_path):
    """The service (a real process) is stopped while it grades; started again on the same data
    folder, it grades every submission: none lost, none graded twice into a second row."""
    import httpx
    from sqlalchemy import create_engine, text

    from tests.service_support import Service, make_students, running_in_group

    data = tmp_path / "data"
    (_, token), = make_students(f"sqlite:///{data / 'service.db'}", 1, prefix="restart")
    env = {"INFERLAB_SERVICE_SUBMISSIONS_PER_MINUTE": "100"}
    lessons = LESSONS[:8]
    with Service(data, workers=2, env=env, log=tmp_path / "first.log") as service:
        for lesson in lessons:
            answer = httpx.post(f"{service.url}/api/submissions", headers=_bearer(token),
                                data={"lesson": lesson}, timeout=60,
                                files={"notebook": (f"{lesson}.ipynb",
                                                    solution(lesson).read_bytes())})
            assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 15      # its grading workers stop with it, none left running
    while running := running_in_group(service.process.pid):
        assert time.monotonic() < deadline, f"the stopped service left processes {running}"
        time.sleep(0.2)
    engine = create_engine(f"sqlite:///{data / 'service.db'}")

    def statuses() -> dict[str, int]:
        with engine.connect() as connection:
            return dict(connection.execute(text(
                "select status, count(*) from submissions group by status")).all())

    left = statuses()
    assert sum(left.values()) == len(lessons)
    assert left.get("queued", 0) + left.get("grading", 0) > 0, left   # it was stopped mid-way
    with Service(data, workers=2, env=env, log=tmp_path / "second.log",
                 port=service.port) as service:     # a data folder keeps its did:web address
        deadline = time.monotonic() + 600
        while httpx.get(service.url + "/healthz", timeout=30).json()["waiting"]:
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.5)
        rows = [httpx.get(f"{service.url}/api/submissions/{i}", headers=_bearer(token),
                          timeout=30).json() for i in range(1, len(lessons) + 1)]
    engine.dispose()
    assert statuses() == {"graded": len(lessons)}
    assert [r["lesson"] for r in rows] == lessons
    assert all(r["score"] == r["max_score"] > 0 for r in rows), rows
