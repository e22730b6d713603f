"""The course service's web application (FastAPI): pages for students and staff, the notebook API,
and the public certificate and issuer documents.

    public      /  /signup  /login  /auth?token=  /about  /verify/ (the static verification page)
                /c/<short id>  (.json  .pdf  /qr.svg)  /.well-known/did.json  /status/1  /trust.json
    students    /dashboard  /submit  /submissions/<id>  /token  /logout      (session cookie + CSRF)
    notebooks   /api/submissions  /api/submissions/<id>  /api/progress      (Bearer API token)
    staff       /admin  /admin/revoke  /admin/rotate  /admin/grades.csv      (admins only)

Everything but the public documents needs a log-in; every form carries a CSRF token; uploads and
e-mails are size- and rate-limited; the notebook is stored and queued, and graded by worker
processes (``grading_queue.py``), never in this process.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import nbformat
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from autograder.certificates import trust
from autograder.certificates.credential import subject_name
from autograder.certificates.links import linkedin_url, verification_url

from . import security
from .config import ServiceConfig
from .db import Database
from .grading_queue import GradingQueue
from .issuer import ServiceIssuer, audit
from .mail import Mailer, MailError
from .models import (
    AuditEvent,
    Credential,
    IssuerKey,
    LoginLink,
    Session,
    Student,
    Submission,
    utcnow,
)
from .progress import criteria, lesson_points, student_progress

TEMPLATES = Path(__file__).with_name("templates")   # package data, not the course folder
SESSION_COOKIE, ANON_COOKIE = "inferlab_session", "inferlab_csrf"
SESSION_DAYS = 14
LINK_LIFETIME = {"confirm": timedelta(hours=24), "login": timedelta(minutes=30)}
EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")
PUBLIC_DOCUMENTS = ("/.well-known/did.json", "/status/1", "/trust.json")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Redirect(Exception):
    def __init__(self, url: str):
        self.url = url


def create_app(config: ServiceConfig, *, mailer: Mailer | None = None,
               start_queue: bool = True) -> FastAPI:
    from ..course import REPOSITORY

    course_root = Path(config.course_root or REPOSITORY)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.uploads.mkdir(parents=True, exist_ok=True)
    database = Database(config.db_url)
    database.migrate()
    issuer = ServiceIssuer(config.base_url, config.issuer_name, config.issuer_dir)
    with database.session() as s:
        issuer.ensure_ready(s)
    mailer = mailer or Mailer(config.mail, config.mail_from, config.smtp_user)
    secret = config.session_secret()
    cookies = security.Signer(secret, "session")
    anon = security.Signer(secret, "anonymous-csrf")
    limits = config.limits
    upload_limiter = security.RateLimiter(limits.submissions_per_minute, 60)
    form_limiter = security.RateLimiter(limits.forms_per_minute, 60)
    email_limiter = security.RateLimiter(limits.emails_per_hour, 3600)
    lessons = lesson_points(str(course_root))

    issuing = threading.Lock()     # two lessons graded at once must not issue twice

    def certify_if_complete(student_id: int) -> None:
        with issuing, database.session() as s:
            student = s.get(Student, student_id)
            if s.scalar(select(Credential).where(Credential.student_id == student_id)):
                return
            progress = student_progress(s, course_root, student_id)
            if progress and all(p.done for p in progress):
                issuer.issue(s, student, criteria(course_root))

    queue = GradingQueue(database, course_root, config.uploads, config.workers,
                         config.ray_address, on_graded=certify_if_complete)

    @asynccontextmanager
    async def lifespan(app):
        if start_queue:
            queue.start()
        yield
        if start_queue:
            queue.stop()

    app = FastAPI(title="inferlab course service", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.config, app.state.db, app.state.queue = config, database, queue
    app.state.issuer, app.state.mailer = issuer, mailer
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes + 64 * 1024)

    def published_entries(session) -> list[dict]:
        """The course's bundled trust list with this service's own entry in it: the verification
        page this service serves trusts the service that serves it (and the course's issuers)."""
        bundled = trust.load_trust_file(trust.repository_verify_dir() / trust.TRUST_JSON)
        return [e for e in bundled if e["did"] != issuer.did] + [issuer.trust_entry(session)]

    @app.get("/verify/trusted-issuers.js")
    def verify_page_trust():
        with database.session() as s:
            text = json.dumps(trust.document(published_entries(s)))
        return Response(f"window.{trust.JS_VARIABLES[trust.TRUST_JS]} = {text};\n",
                        media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.get("/verify/trusted-issuers.json")
    def verify_page_trust_json():
        with database.session() as s:
            return trust.document(published_entries(s))

    app.mount("/verify", StaticFiles(directory=str(REPOSITORY / "docs" / "verify"), html=True),
              name="verify")

    # ---------------------------------------------------------------------- middleware
    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path in PUBLIC_DOCUMENTS or request.url.path.endswith(".json"):
            response.headers["Access-Control-Allow-Origin"] = "*"   # verifiers on other sites
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/verify"):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'")
        return response

    @app.exception_handler(Redirect)
    async def _redirect(request, exc: Redirect):
        return RedirectResponse(exc.url, status_code=303)

    # ------------------------------------------------------------------------- helpers
    def client(request: Request) -> str:
        return request.client.host if request.client else "?"

    def current(request: Request):
        """(student, session row) of the browser's session, or (None, None)."""
        sid = cookies.unsign(request.cookies.get(SESSION_COOKIE))
        if not sid:
            return None, None
        with database.session() as s:
            row = s.get(Session, security.digest(sid))
            if row is None or row.expires_at < utcnow():
                return None, None
            return s.get(Student, row.student_id), row

    def user(request: Request) -> Student:
        student, _ = current(request)
        if student is None:
            raise Redirect("/")
        return student

    def admin(request: Request) -> Student:
        student = user(request)
        if not student.is_admin:
            raise HTTPException(403, "this page is for the course's staff")
        return student

    def csrf_value(request: Request) -> str:
        _, row = current(request)
        if row is not None:
            return row.csrf
        return anon.unsign(request.cookies.get(ANON_COOKIE)) or ""

    def check_csrf(request: Request, token: str) -> None:
        if not security.same(token, csrf_value(request)):
            raise HTTPException(403, "the form expired or did not come from this site: reload "
                                     "the page and try again")

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        student, row = current(request)
        token = row.csrf if row else anon.unsign(request.cookies.get(ANON_COOKIE))
        fresh = None
        if not token:
            fresh = security.new_token()
            token = fresh
        response = templates.TemplateResponse(
            request, template, {"me": student, "csrf": token, "config": config, **context},
            status_code=status)
        if fresh:
            response.set_cookie(ANON_COOKIE, anon.sign(fresh), httponly=True, samesite="lax",
                                secure=config.secure_cookies)
        return response

    def api_student(request: Request) -> Student:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or len(header) > 200:
            raise HTTPException(401, "missing API token: copy yours from your dashboard "
                                     f"({config.base_url}/dashboard) into the submit form")
        with database.session() as s:
            student = s.scalar(select(Student).where(
                Student.token_hash == security.digest(header[7:].strip())))
        if student is None or student.confirmed_at is None:
            raise HTTPException(401, "unknown API token: make a new one on your dashboard "
                                     f"({config.base_url}/dashboard)")
        return student

    def send_link(student: Student, purpose: str) -> None:
        token = security.new_token()
        with database.session() as s:
            s.add(LoginLink(token_hash=security.digest(token), student_id=student.id,
                            purpose=purpose, created_at=utcnow(),
                            expires_at=utcnow() + LINK_LIFETIME[purpose]))
        link = f"{config.base_url}/auth?token={token}"
        if purpose == "confirm":
            subject, text = "Confirm your e-mail address for inferlab", (
                f"Hello {student.name},\n\nconfirm your address and open your course dashboard:\n"
                f"{link}\n\nThe link works once, for 24 hours. If you did not sign up, ignore "
                "this message.\n")
        else:
            subject, text = "Your inferlab log-in link", (
                f"Hello {student.name},\n\nlog in to the course service:\n{link}\n\nThe link "
                "works once, for 30 minutes. If you did not ask for it, ignore this message.\n")
        mailer.send(student.email, subject, text)

    def store_submission(student: Student, lesson: str, filename: str, data: bytes) -> int:
        if lesson not in lessons:
            raise HTTPException(422, f"unknown lesson {lesson!r}: one of {', '.join(lessons)}")
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"the notebook is larger than "
                                     f"{limits.max_upload_bytes // 2**20} MB")
        try:
            nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception:  # noqa: BLE001 - any parse failure is the same answer for the student
            raise HTTPException(422, "this file is not a Jupyter notebook (.ipynb): save the "
                                     "notebook and upload the .ipynb file itself") from None
        wait = upload_limiter.hit(f"student:{student.id}")
        if wait:
            raise HTTPException(429, f"too many submissions: try again in {wait:.0f} s",
                                headers={"Retry-After": str(int(wait) + 1)})
        with database.session() as s:
            waiting = s.scalar(select(func.count(Submission.id)).where(
                Submission.student_id == student.id,
                Submission.status.in_(("queued", "grading"))))
            if waiting >= limits.queued_per_student:
                raise HTTPException(429, f"{waiting} of your submissions are still waiting to "
                                         "be graded: wait for them first",
                                    headers={"Retry-After": "60"})
            row = Submission(student_id=student.id, lesson=lesson,
                             filename=Path(filename or f"{lesson}.ipynb").name[:255],
                             sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                             status="queued", submitted_at=utcnow(), attempts=0)
            s.add(row)
            s.flush()
            path = config.uploads / f"{row.id}.ipynb"
            path.write_bytes(data)
            sid = row.id
        queue.notify()
        return sid

    def submission_dict(row: Submission) -> dict:
        report = json.loads(row.report) if row.report else {}
        return {"id": row.id, "lesson": row.lesson, "status": row.status, "score": row.score,
                "max_score": row.max_score, "file": row.filename,
                "error": report.get("error", ""), "notes": report.get("notes", []),
                "tests": [{k: t.get(k) for k in ("grade_id", "points", "score", "status",
                                                 "message")} for t in report.get("tests", [])],
                "submitted_at": row.submitted_at.isoformat(),
                "graded_at": row.graded_at.isoformat() if row.graded_at else None,
                "url": f"{config.base_url}/submissions/{row.id}"}

    def own_submission(student: Student, sid: int) -> Submission:
        with database.session() as s:
            row = s.get(Submission, sid)
        if row is None or (row.student_id != student.id and not student.is_admin):
            raise HTTPException(404, "no such submission")
        return row

    def certificate_of(short_id: str) -> Credential:
        with database.session() as s:
            row = s.scalar(select(Credential).where(Credential.short_id == short_id[:32]))
        if row is None:
            raise HTTPException(404, "no certificate has this address")
        return row

    # -------------------------------------------------------------------- public pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        if current(request)[0] is not None:
            return RedirectResponse("/dashboard", status_code=303)
        return page(request, "home.html", lessons=list(lessons))

    @app.get("/about", response_class=HTMLResponse)
    def about(request: Request):
        return page(request, "about.html", criteria=criteria(course_root))

    @app.post("/signup")
    def signup(request: Request, name: str = Form(...), email: str = Form(...),
               csrf: str = Form("")):
        check_csrf(request, csrf)
        name, email = " ".join(name.split()), email.strip().lower()
        if not (1 <= len(name) <= 120) or CONTROL.search(name) or "<" in name:
            return home_error(request, 422, "Please give your name as it should appear on the "
                              "certificate (1-120 characters, no < or control characters).")
        if not EMAIL.match(email):
            return home_error(request, 422, f"{email!r} is not an e-mail address.")
        if wait := throttled(request, email):
            return home_error(request, 429, f"Too many attempts: try again in {wait:.0f} s.")
        with database.session() as s:
            student = s.scalar(select(Student).where(Student.email == email))
            if student is None:
                student = Student(name=name, email=email, created_at=utcnow(),
                                  is_admin=email in config.admin_emails)
                s.add(student)
                s.flush()
        return mail_link(request, student)

    @app.post("/login")
    def login(request: Request, email: str = Form(...), csrf: str = Form("")):
        check_csrf(request, csrf)
        email = email.strip().lower()
        if wait := throttled(request, email):
            return home_error(request, 429, f"Too many attempts: try again in {wait:.0f} s.")
        with database.session() as s:
            student = s.scalar(select(Student).where(Student.email == email))
        return mail_link(request, student)

    def home_error(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "home.html", status, lessons=list(lessons), error=message)

    def throttled(request: Request, email: str) -> float:
        """Seconds to wait before this address (or this mailbox) may ask for another link."""
        return form_limiter.hit(f"ip:{client(request)}") or email_limiter.hit(f"email:{email}")

    def mail_link(request: Request, student: Student | None):
        """Send the student a confirmation (new address) or log-in link. The answer is the same
        whether or not an account exists: nobody learns who has one."""
        if student is not None:
            try:
                send_link(student, "login" if student.confirmed_at else "confirm")
            except MailError as exc:
                return home_error(request, 503, str(exc))
        return RedirectResponse("/check-email", status_code=303)

    @app.get("/check-email", response_class=HTMLResponse)
    def check_email(request: Request):
        return page(request, "check_email.html")

    @app.get("/auth")
    def auth(request: Request, token: str = ""):
        with database.session() as s:
            link = s.scalar(select(LoginLink).where(LoginLink.token_hash == security.digest(token)))
            if link is None or link.used_at is not None or link.expires_at < utcnow():
                return page(request, "message.html", 400, title="This link does not work",
                            text="It was already used, has expired, or was cut when copied. "
                                 "Ask for a new one on the home page.")
            link.used_at = utcnow()
            student = s.get(Student, link.student_id)
            if student.confirmed_at is None:
                student.confirmed_at = utcnow()
            if student.email in config.admin_emails:
                student.is_admin = True
            sid = security.new_token()
            s.add(Session(id=security.digest(sid), student_id=student.id,
                          csrf=security.new_token(), created_at=utcnow(),
                          expires_at=utcnow() + timedelta(days=SESSION_DAYS)))
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookies.sign(sid), max_age=SESSION_DAYS * 86400,
                            httponly=True, samesite="lax", secure=config.secure_cookies)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form(""), me: Student = Depends(user)):
        check_csrf(request, csrf)
        _, row = current(request)
        with database.session() as s:
            s.delete(s.get(Session, row.id))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ----------------------------------------------------------------------- students
    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, me: Student = Depends(user)):
        with database.session() as s:
            progress = student_progress(s, course_root, me.id)
            rows = s.scalars(select(Submission).where(Submission.student_id == me.id)
                             .order_by(Submission.id.desc()).limit(50)).all()
            credential = s.scalar(select(Credential).where(Credential.student_id == me.id))
        return page(request, "dashboard.html", progress=progress, submissions=rows,
                    credential=credential, complete=all(p.done for p in progress),
                    lessons=list(lessons), has_token=me.token_hash is not None)

    @app.post("/token", response_class=HTMLResponse)
    def new_api_token(request: Request, csrf: str = Form(""), me: Student = Depends(user)):
        check_csrf(request, csrf)
        token = security.new_token()
        with database.session() as s:
            s.get(Student, me.id).token_hash = security.digest(token)
        return page(request, "token.html", token=token)

    @app.post("/submit")
    async def submit_form(request: Request, lesson: str = Form(...), csrf: str = Form(""),
                          notebook: UploadFile = File(...), me: Student = Depends(user)):
        check_csrf(request, csrf)
        data = await notebook.read(limits.max_upload_bytes + 1)
        sid = store_submission(me, lesson, notebook.filename, data)
        return RedirectResponse(f"/submissions/{sid}", status_code=303)

    @app.get("/submissions/{sid}", response_class=HTMLResponse)
    def submission_page(request: Request, sid: int, me: Student = Depends(user)):
        return page(request, "submission.html", s=submission_dict(own_submission(me, sid)))

    # --------------------------------------------------------------------------- API
    @app.post("/api/submissions", status_code=202)
    async def api_submit(lesson: str = Form(...), notebook: UploadFile = File(...),
                         me: Student = Depends(api_student)):
        data = await notebook.read(limits.max_upload_bytes + 1)
        sid = store_submission(me, lesson, notebook.filename, data)
        return {"id": sid, "lesson": lesson, "status": "queued",
                "url": f"{config.base_url}/submissions/{sid}"}

    @app.get("/api/submissions/{sid}")
    def api_submission(sid: int, me: Student = Depends(api_student)):
        return submission_dict(own_submission(me, sid))

    @app.get("/api/progress")
    def api_progress(me: Student = Depends(api_student)):
        with database.session() as s:
            progress = student_progress(s, course_root, me.id)
            credential = s.scalar(select(Credential).where(Credential.student_id == me.id))
        return {"lessons": [p.to_dict() for p in progress],
                "complete": all(p.done for p in progress),
                "certificate": issuer.public_url(credential) if credential else None}

    # ------------------------------------------------------------ certificates (public)
    @app.get("/.well-known/did.json")
    def did_json():
        with database.session() as s:
            return JSONResponse(issuer.did_document(s), media_type="application/did+json")

    @app.get("/status/1")
    def status_list():
        with database.session() as s:
            return JSONResponse(issuer.status_list_credential(s),
                                media_type="application/vc+ld+json",
                                headers={"Cache-Control": "max-age=60"})

    @app.get("/trust.json")
    def trust_json():
        with database.session() as s:
            return trust.document([issuer.trust_entry(s)])

    def credential_view(row: Credential) -> dict:
        document = json.loads(row.document)
        url = issuer.public_url(row)
        return {"row": row, "credential": document, "url": url,
                "linkedin": linkedin_url(document, url),
                "self_verifying": verification_url(f"{config.base_url}/verify/", document),
                "holder": subject_name(document) or "?"}

    @app.get("/c/{short_id}.json")
    def certificate_json(short_id: str):
        row = certificate_of(short_id)
        return JSONResponse(json.loads(row.document), media_type="application/vc+ld+json")

    @app.get("/c/{short_id}.pdf")
    def certificate_pdf(short_id: str):
        import tempfile

        from autograder.certificates.pdf import write_certificate_pdf

        row = certificate_of(short_id)
        with tempfile.TemporaryDirectory() as tmp:
            path = write_certificate_pdf(Path(tmp) / "certificate.pdf", json.loads(row.document),
                                         issuer.public_url(row))
            data = Path(path).read_bytes()
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="inferlab-certificate-{short_id}.pdf"'})

    @app.get("/c/{short_id}/qr.svg")
    def certificate_qr(short_id: str):
        from .qr import qr_svg

        return Response(qr_svg(issuer.public_url(certificate_of(short_id))),
                        media_type="image/svg+xml")

    @app.get("/c/{short_id}", response_class=HTMLResponse)
    def certificate_page(request: Request, short_id: str):
        from autograder.certificates.verifier import verify_credential

        row = certificate_of(short_id)
        view = credential_view(row)
        with database.session() as s:
            verification = verify_credential(row.document, published_entries(s))
        return page(request, "certificate.html", verification=verification,
                    criteria=criteria(course_root), **view)

    # --------------------------------------------------------------------------- staff
    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request, me: Student = Depends(admin)):
        with database.session() as s:
            students = s.scalars(select(Student).order_by(Student.id)).all()
            counts = dict(s.execute(select(Submission.student_id, func.count(Submission.id))
                                    .group_by(Submission.student_id)).all())
            submissions = s.scalars(select(Submission).order_by(Submission.id.desc())
                                    .limit(100)).all()
            credentials = s.scalars(select(Credential).order_by(Credential.issued_at.desc())).all()
            keys = issuer.keys(s)
            events = s.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(100)).all()
            by_id = {st.id: st for st in students}
        return page(request, "admin.html", students=students, counts=counts,
                    submissions=submissions, credentials=credentials, keys=keys, events=events,
                    by_id=by_id, did=issuer.did)

    @app.post("/admin/revoke")
    def admin_revoke(request: Request, credential_id: str = Form(...), csrf: str = Form(""),
                     me: Student = Depends(admin)):
        check_csrf(request, csrf)
        with database.session() as s:
            row = s.get(Credential, credential_id)
            if row is None:
                raise HTTPException(404, "no such credential")
            issuer.revoke(s, row, me.email)
        return RedirectResponse("/admin#credentials", status_code=303)

    @app.post("/admin/rotate")
    def admin_rotate(request: Request, csrf: str = Form(""), me: Student = Depends(admin)):
        check_csrf(request, csrf)
        with database.session() as s:
            issuer.rotate(s, me.email)
        return RedirectResponse("/admin#keys", status_code=303)

    @app.get("/admin/grades.csv")
    def admin_grades(me: Student = Depends(admin)):
        """One row per student: best score per lesson (an LMS imports it as a grade sheet)."""
        out = io.StringIO()
        writer = csv.writer(out)
        names = list(lessons)
        writer.writerow(["name", "email", *names, "complete", "certificate"])
        with database.session() as s:
            for student in s.scalars(select(Student).order_by(Student.id)):
                progress = {p.lesson: p for p in student_progress(s, course_root, student.id)}
                credential = s.scalar(select(Credential).where(Credential.student_id == student.id))
                writer.writerow([
                    _cell(student.name), _cell(student.email),
                    *[("" if progress[n].best_score is None else f"{progress[n].best_score:g}")
                      for n in names],
                    "yes" if all(p.done for p in progress.values()) else "no",
                    issuer.public_url(credential) if credential and not credential.revoked_at
                    else ""])
            audit(s, me.email, "exported-grades", "grades.csv")
        return PlainTextResponse(out.getvalue(), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="inferlab-grades.csv"'})

    @app.get("/healthz")
    def healthz():
        with database.session() as s:
            queued = s.scalar(select(func.count(Submission.id))
                              .where(Submission.status.in_(("queued", "grading"))))
            keys = s.scalar(select(func.count(IssuerKey.id)))
        return {"ok": True, "waiting": queued, "keys": keys}

    return app


class BodyLimit:
    """Refuses a request body larger than ``max_bytes`` (413) - by its Content-Length, and while
    it streams in when there is none - before any form parser spools it anywhere."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        limit = self.max_bytes // 2**20
        body = json.dumps({"detail": f"the upload is larger than {limit} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
