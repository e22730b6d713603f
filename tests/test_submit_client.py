"""The notebook's submission client (inferlab.lab.submit) against a real local HTTP server that
follows the course service's API: the upload arrives intact, the token travels only in the
Authorization header, the grade is polled until it is final, every failure says what to do, the
notebook is found where Jupyter, Colab or the working folder put it, and the form works."""
from __future__ import annotations

import email.parser
import email.policy
import io
import json
import os
import re
import socket
import stat
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inferlab.lab import submit as sub
from tests import notebooks as nbt

TOKEN = "tok-3f9a1c-SECRET"
LESSON = "05_kv_cache"
LESSONS = {"00_why_inference_is_slow", LESSON}
# A notebook whose bytes would break a careless multipart body: non-ASCII text, CRLF, lines
# that start with "--", a NUL escape and a trailing newline.
NOTEBOOK = (json.dumps({
    "cells": [{"cell_type": "code", "source": "x = 'é ü 漢字 🚀'\r\n--boundary-like\r\n--\r\n",
               "metadata": {}, "outputs": [], "execution_count": None},
              {"cell_type": "markdown", "source": "\u0000 end \r\n\r\n", "metadata": {}}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, ensure_ascii=False) + "\n").encode()


def parse_multipart(content_type: str, body: bytes) -> tuple[dict, dict]:
    """(fields, files) of a multipart/form-data body, by the standard library's MIME parser:
    files = {name: (filename, content type, bytes)}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart(), "the body is not multipart"
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), part.get_content_type(), payload)
        else:
            fields[name] = payload.decode()
    return fields, files


class Service:
    """The state of the fake course service; a test changes its knobs."""

    def __init__(self):
        self.requests = []           # every request: method, path, headers, body
        self.uploads = []            # (fields, files) of each accepted POST
        self.max_bytes = sub.MAX_BYTES
        self.rate_limited = False
        self.polls_until_graded = 2
        self.polls = 0
        self.final = "graded"
        self.sleep_s = 0.0
        self.redirect = False
        self.fail_polls = False
        self.refuse_early = 0       # answer 413 to a larger body without reading it, and close
        self.lock = threading.Lock()

    def result(self, number: int) -> dict:
        with self.lock:
            self.polls += 1
            polls = self.polls
        status = (self.final if polls > self.polls_until_graded
                  else "queued" if polls == 1 else "grading")
        answer = {"id": number, "lesson": LESSON, "status": status, "score": None,
                  "max_score": None, "tests": [], "submitted_at": "2026-12-02T10:00:00Z",
                  "graded_at": None}
        if status == "graded":
            answer.update(score=3.0, max_score=5.0, graded_at="2026-12-02T10:00:09Z", tests=[
                {"grade_id": "test_kv_cache_size", "points": 2, "score": 2.0,
                 "status": "passed", "message": ""},
                {"grade_id": "test_static_cache", "points": 3, "score": 1.0,
                 "status": "failed", "message": "AssertionError: the cache\nlost row 2"}])
        if status == "error":
            answer["error"] = "the grader stopped"
        if status == "graded":
            answer["notes"] = ["cell 12 was edited: its original was used"]
        return answer


def make_handler(service: Service):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, data, headers=()):
            body = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def record(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            service.requests.append({"method": self.command, "path": self.path,
                                     "headers": dict(self.headers.items()), "body": body})
            return body

        def authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"detail": "Invalid or missing API token"})
                return False
            return True

        def do_POST(self):
            if int(self.headers.get("Content-Length") or 0) > service.refuse_early > 0:
                self.close_connection = True
                return self.reply(413, {"detail": "Request body too large"})
            body = self.record()
            if service.sleep_s:
                time.sleep(service.sleep_s)
            if service.redirect:
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != "/api/submissions":
                return self.reply(404, {"detail": "Not Found"})
            if not self.authorized():
                return
            if service.rate_limited:
                return self.reply(429, {"detail": "Slow down"}, [("Retry-After", "42")])
            if len(body) > service.max_bytes:
                return self.reply(413, {"detail": "Request entity too large"})
            fields, files = parse_multipart(self.headers["Content-Type"], body)
            if fields.get("lesson") not in LESSONS:
                return self.reply(422, {"detail": f"Unknown lesson {fields.get('lesson')!r}"})
            if "notebook" not in files:
                return self.reply(422, {"detail": "No notebook file"})
            service.uploads.append((fields, files))
            number = 16 + len(service.uploads)
            base = f"http://{self.headers['Host']}"
            self.reply(202, {"id": number, "lesson": fields["lesson"], "status": "queued",
                             "url": f"{base}/submissions/{number}"})

        def do_GET(self):
            self.record()
            if not self.authorized():
                return
            match = re.fullmatch(r"/api/submissions/(\d+)", self.path)
            if match and service.fail_polls:
                return self.reply(500, {"detail": "database is locked"})
            if match:
                return self.reply(200, service.result(int(match.group(1))))
            if self.path == "/api/progress":
                return self.reply(200, {"lessons": [{"lesson": LESSON, "best_score": 3,
                                                     "max_score": 5, "needed": 3.5,
                                                     "done": False}],
                                        "complete": False, "certificate": None})
            self.reply(404, {"detail": "Not Found"})

    return Handler


@pytest.fixture()
def service():
    state = Service()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def student(tmp_path, monkeypatch):
    """A student's machine: an empty config folder, no service variables, the notebook saved
    just now in the working folder, no Colab."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in (sub.ENV_SERVICE, sub.ENV_TOKEN, "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", None)   # `import google.colab` fails
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / f"{LESSON}.ipynb").write_bytes(NOTEBOOK)
    monkeypatch.setattr(sub, "POLL_S", 0.01)
    return work


def quiet_submit(**kwargs):
    said = []
    result = sub.submit(report=said.append, **kwargs)
    return result, said


def error_of(**kwargs) -> str:
    with pytest.raises(sub.SubmitError) as caught:
        sub.submit(report=lambda _: None, **kwargs)
    assert TOKEN not in str(caught.value)
    return str(caught.value)


# --- the upload and the grade --------------------------------------------------------------------

def test_the_notebook_arrives_intact_and_the_grade_is_polled_to_the_end(service, capsys):
    result = sub.submit(LESSON, service=service.url, token=TOKEN)
    fields, files = service.uploads[0]
    assert fields == {"lesson": LESSON}
    assert files == {"notebook": (f"{LESSON}.ipynb", "application/x-ipynb+json", NOTEBOOK)}
    assert result["status"] == "graded" and result["score"] == 3.0
    assert result["url"].endswith("/submissions/17")
    polls = [r for r in service.requests if r["method"] == "GET"]
    assert [r["path"] for r in polls] == ["/api/submissions/17"] * 3   # queued, grading, graded
    shown = capsys.readouterr().out
    assert "05_kv_cache: 3 / 5 points" in shown
    assert re.search(r"passed\s+test_kv_cache_size: 2 / 2", shown)
    assert re.search(r"failed\s+test_static_cache: 1 / 3\s+AssertionError: the cache lost row 2",
                     shown)
    assert "note: cell 12 was edited: its original was used" in shown
    assert "queued" in shown and "grading" in shown
    assert TOKEN not in shown


def test_the_body_is_what_a_web_framework_parses(service):
    multipart = pytest.importorskip("python_multipart")   # the parser Starlette uses
    sub.submit(LESSON, service=service.url, token=TOKEN, wait=False, report=lambda _: None)
    post = service.requests[0]
    fields, files = {}, {}

    def on_field(field):
        fields[field.field_name] = field.value

    def on_file(file):
        file.file_object.seek(0)
        files[file.field_name] = (file.file_name, file.file_object.read())

    multipart.parse_form({"Content-Type": post["headers"]["Content-Type"],
                          "Content-Length": str(len(post["body"]))},
                         io.BytesIO(post["body"]), on_field, on_file)
    assert fields == {b"lesson": LESSON.encode()}
    assert files == {b"notebook": (f"{LESSON}.ipynb".encode(), NOTEBOOK)}


def test_the_token_travels_only_in_the_authorization_header(service, capsys):
    quiet_submit(lesson=LESSON, service=service.url, token=TOKEN)
    assert len(service.requests) == 4
    for request in service.requests:
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in request["path"]
        assert TOKEN.encode() not in request["body"]
        others = {k: v for k, v in request["headers"].items() if k != "Authorization"}
        assert TOKEN not in json.dumps(others)
    assert TOKEN not in capsys.readouterr().out


def test_without_wait_the_queued_submission_is_returned(service):
    result, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, wait=False)
    assert result == {"id": 17, "lesson": LESSON, "status": "queued",
                      "url": f"{service.url}/submissions/17"}
    assert not [r for r in service.requests if r["method"] == "GET"]
    assert any("submission 17" in line for line in said)


def test_a_grading_error_is_reported(service):
    service.final = "error"
    result, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN)
    assert result["status"] == "error"
    assert "could not grade this submission (the grader stopped)" in said[-1]


def test_waiting_gives_up_after_the_timeout_with_the_address_to_look_at(service):
    service.polls_until_graded = 10**6
    result, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, timeout=0.2)
    assert result["status"] == "grading"
    assert f"the grade will appear at {service.url}/submissions/17" in said[-1]


def test_a_failure_while_waiting_says_the_submission_was_received(service):
    service.fail_polls = True
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "course service failed (HTTP 500)" in message and "database is locked" in message
    assert f"Submission 17 was received: its grade will appear at {service.url}/submissions/17" \
        in message


def test_progress(service):
    progress = sub.progress(service=service.url, token=TOKEN)
    assert progress["complete"] is False and progress["lessons"][0]["lesson"] == LESSON


# --- every failure says what to do ---------------------------------------------------------------

def test_no_service_configured_says_how():
    message = error_of(lesson=LESSON)
    assert "No course service is set" in message
    assert "save_login" in message and "INFERLAB_SERVICE" in message


def test_no_token_says_where_to_find_it(service):
    message = error_of(lesson=LESSON, service=service.url)
    assert "No API token" in message and "dashboard" in message
    assert service.requests == []


def test_a_wrong_token_401(service):
    message = error_of(lesson=LESSON, service=service.url, token="not-the-token")
    assert "HTTP 401" in message and "did not accept your API token" in message
    assert "Invalid or missing API token" in message          # the server's own words
    assert f"dashboard on {service.url}" in message


def test_too_large_413(service):
    service.max_bytes = 100
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "too large" in message and "8 MB" in message and "Clear" in message


def test_too_large_for_a_service_that_stops_reading(service, student):
    service.refuse_early = 1024
    big = json.loads(NOTEBOOK)
    big["cells"][0]["source"] = "x" * (4 * 2**20)
    (student / f"{LESSON}.ipynb").write_text(json.dumps(big))
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "too large" in message and "Clear" in message   # a 413 or a cut connection


def test_too_large_is_refused_before_uploading(service, student):
    big = json.loads(NOTEBOOK)
    big["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout",
                                   "text": "x" * (sub.MAX_BYTES + 10)}]
    (student / f"{LESSON}.ipynb").write_text(json.dumps(big))
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "too large (8.0 MB)" in message
    assert service.requests == []


def test_unknown_lesson_422_shows_the_servers_message(service, student):
    (student / "00_why_inference_is_slow.ipynb").write_bytes(NOTEBOOK)
    service_lessons = set(LESSONS)
    LESSONS.discard("00_why_inference_is_slow")
    try:
        message = error_of(lesson="00_why_inference_is_slow", service=service.url, token=TOKEN)
    finally:
        LESSONS.update(service_lessons)
    assert "HTTP 422" in message and "Unknown lesson '00_why_inference_is_slow'" in message


def test_not_a_notebook_is_refused_before_uploading(service, student):
    (student / f"{LESSON}.ipynb").write_text("print('hello')")
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "not a notebook" in message
    assert service.requests == []


def test_rate_limited_429_says_how_long_to_wait(service):
    service.rate_limited = True
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "HTTP 429" in message and "wait 42 s" in message


def test_connection_refused_asks_whether_the_service_runs():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = error_of(lesson=LESSON, service=f"http://127.0.0.1:{port}", token=TOKEN)
    assert "connection refused" in message and "Is the course service running" in message
    assert f"127.0.0.1:{port}" in message


def test_a_silent_service_times_out(service, monkeypatch):
    monkeypatch.setattr(sub, "HTTP_TIMEOUT_S", 0.3)
    service.sleep_s = 1.5
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "did not answer within 0.3 s (timeout)" in message


def test_a_redirect_is_refused_and_the_token_not_resent(service):
    service.redirect = True
    message = error_of(lesson=LESSON, service=service.url, token=TOKEN)
    assert "redirects to http://127.0.0.1:9/elsewhere" in message
    assert len(service.requests) == 1


def test_a_wrong_address_404(service):
    message = error_of(lesson=LESSON, service=service.url + "/not-here", token=TOKEN)
    assert "HTTP 404" in message and "course service's address" in message


@pytest.mark.parametrize("address, expected", [
    ("course.example.org/", "https://course.example.org"),
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://localhost:8000/", "http://localhost:8000"),
    ("https://x.org/inferlab", "https://x.org/inferlab"),
])
def test_service_addresses_are_normalized(address, expected):
    assert sub.normalize_service(address) == expected


def test_plain_http_to_another_host_is_refused():
    with pytest.raises(sub.SubmitError, match="unencrypted"):
        sub.normalize_service("http://course.example.org")


def test_a_token_with_a_line_break_is_refused(service):
    message = error_of(lesson=LESSON, service=service.url, token="abc\r\nX-Evil: 1")
    assert "line breaks" in message and service.requests == []


# --- where the service and the token come from ---------------------------------------------------

def test_save_login_writes_a_private_file_and_submit_uses_it(service, tmp_path):
    path = sub.save_login(service.url + "/", TOKEN)
    assert path == tmp_path / "config" / "inferlab" / "service.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"service": service.url, "token": TOKEN}
    result, _ = quiet_submit(lesson=LESSON)
    assert result["status"] == "graded"


def test_environment_beats_the_file_and_arguments_beat_both(monkeypatch):
    sub.save_login("https://file.example.org", "file-token")
    assert sub.resolve_login() == ("https://file.example.org", "file-token")
    monkeypatch.setenv(sub.ENV_SERVICE, "https://env.example.org")
    monkeypatch.setenv(sub.ENV_TOKEN, "env-token")
    assert sub.resolve_login() == ("https://env.example.org", "env-token")
    assert sub.resolve_login("https://arg.example.org", "arg-token") == (
        "https://arg.example.org", "arg-token")


def test_a_saved_token_is_never_sent_to_another_service():
    sub.save_login("https://file.example.org", "file-token")
    assert sub.resolve_login("file.example.org") == ("https://file.example.org", "file-token")
    with pytest.raises(sub.SubmitError, match="No API token"):
        sub.resolve_login("https://other.example.org")


# --- which notebook ------------------------------------------------------------------------------

def test_jupyter_names_the_notebook(service, student, tmp_path, monkeypatch):
    elsewhere = tmp_path / "somewhere" / "my copy.ipynb"
    elsewhere.parent.mkdir()
    mine = NOTEBOOK.replace(b"end", b"MINE")
    elsewhere.write_bytes(mine)
    monkeypatch.setenv("JPY_SESSION_NAME", str(elsewhere))
    assert sub.notebook_path(LESSON) == elsewhere
    _, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, wait=False)
    assert service.uploads[0][1]["notebook"][2] == mine
    assert any("Warning: the file my copy.ipynb is submitted as lesson 05_kv_cache" in line
               for line in said)


def test_a_relative_session_name_is_found_in_the_working_folder(student, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", f"course/{LESSON}/{LESSON}.ipynb")
    assert sub.notebook_path(LESSON) == student / f"{LESSON}.ipynb"


def test_the_kernels_session_variable_is_used(student, tmp_path, monkeypatch):
    other = tmp_path / "other.ipynb"
    other.write_bytes(NOTEBOOK)
    monkeypatch.setattr(sub, "_ipython_variable",
                        lambda name: str(other) if name == "__session__" else None)
    assert sub.notebook_path(LESSON) == other


def test_without_a_session_name_the_lesson_file_in_the_working_folder(student, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/nowhere/renamed.ipynb")
    assert sub.notebook_path(LESSON) == student / f"{LESSON}.ipynb"
    (student / f"{LESSON}.ipynb").unlink()
    with pytest.raises(sub.SubmitError, match=r"05_kv_cache.ipynb does not exist.*notebook="):
        sub.notebook_path(LESSON)


def test_the_lesson_is_taken_from_the_session_name(service, student, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(student / f"{LESSON}.ipynb"))
    result, _ = quiet_submit(service=service.url, token=TOKEN, wait=False)
    assert result["lesson"] == LESSON and service.uploads[0][0] == {"lesson": LESSON}


def test_without_any_clue_the_lesson_must_be_named(service):
    message = error_of(service=service.url, token=TOKEN)
    assert 'submit("05_kv_cache")' in message


def test_a_stale_file_is_warned_about_and_a_fresh_one_not(service, student):
    path = student / f"{LESSON}.ipynb"
    _, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, wait=False)
    assert any("save the notebook first" in line for line in said)
    assert not any("NOT submitted" in line for line in said)
    old = time.time() - 20 * 60
    os.utime(path, (old, old))
    _, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, wait=False)
    assert any("last saved 20 minutes ago" in line and "NOT submitted" in line for line in said)


def test_colab_hands_over_the_notebook_in_the_browser(service, monkeypatch):
    in_browser = json.loads(NOTEBOOK)
    in_browser["cells"][1]["source"] = "unsaved edit"
    asked = []

    def blocking_request(kind, request="", timeout_sec=5):
        asked.append(kind)
        return {"ipynb": in_browser}

    message = types.ModuleType("google.colab._message")
    message.blocking_request = blocking_request
    colab = types.ModuleType("google.colab")
    colab._message = message
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab._message", message)
    _, said = quiet_submit(lesson=LESSON, service=service.url, token=TOKEN, wait=False)
    assert asked == ["get_ipynb"]
    assert json.loads(service.uploads[0][1]["notebook"][2]) == in_browser
    assert not any("save the notebook" in line for line in said)


# --- the form ------------------------------------------------------------------------------------

def test_the_form_builds_without_contacting_anything_and_never_holds_the_token(service):
    sub.save_login(service.url, TOKEN)
    form = sub.submit_form(LESSON)
    assert form.service.value == service.url
    assert form.token.value == "" and "saved token" in form.token.placeholder
    assert TOKEN not in json.dumps([child.get_state() for child in form.children],
                                   default=str)
    assert service.requests == []
    assert form.button.description == "Submit" and not form.button.disabled


def test_the_form_builds_despite_a_broken_login_file():
    sub.login_path().parent.mkdir(parents=True)
    sub.login_path().write_text("{not json")
    form = sub.submit_form(LESSON)
    assert form.service.value == "" and form.token.value == ""
    form.button.click()
    assert "delete it and run save_login" in form.status.value


def test_the_forms_button_submits_and_shows_the_score(service):
    form = sub.submit_form(LESSON)
    form.service.value = service.url
    form.token.value = TOKEN
    form.button.click()
    form.worker.join(10)
    assert not form.worker.is_alive()
    assert len(service.uploads) == 1
    assert service.uploads[0][1]["notebook"][2] == NOTEBOOK
    status = form.status.value
    assert "05_kv_cache: 3 / 5 points" in status
    assert "test_static_cache" in status and "AssertionError: the cache" in status
    assert "1 / 3" in status and "passed" in status and "note: cell 12 was edited" in status
    assert TOKEN not in status and not form.button.disabled


def test_the_form_remembers_the_login_when_asked(service):
    form = sub.submit_form(LESSON, background=False)
    form.service.value, form.token.value, form.remember.value = service.url, TOKEN, True
    form.button.click()
    assert "3 / 5 points" in form.status.value
    assert json.loads(sub.login_path().read_text())["token"] == TOKEN


def test_the_form_shows_failures_and_stays_usable(service):
    form = sub.submit_form(LESSON, background=False)
    form.service.value, form.token.value = service.url, "wrong"
    form.button.click()
    assert "did not accept your API token" in form.status.value
    assert not form.button.disabled and service.uploads == []
    form.token.value = TOKEN
    form.button.click()
    assert "3 / 5 points" in form.status.value


# --- every lesson ends with the form -------------------------------------------------------------

@pytest.mark.parametrize("lesson", nbt.lesson_ids())
def test_every_lesson_ends_with_its_own_submit_form(lesson):
    for path in (nbt.solution_path(lesson), nbt.release_path(lesson)):
        cells = nbt.read(path).cells
        explain, form = cells[-2], cells[-1]
        assert explain.cell_type == "markdown" and "## Submit this lesson" in explain.source
        assert "nbgrader" in explain.source and "course service" in explain.source
        assert form.cell_type == "code" and not form.metadata.get("nbgrader")
        assert form.source == ("from inferlab.lab.submit import submit_form\n\n"
                               f'submit_form("{lesson}")'), path


def test_the_form_cell_runs_in_a_kernel_and_contacts_nothing(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    cell = nbt.read(nbt.solution_path(LESSON)).cells[-1]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell.source)])
    path = tmp_path / f"{LESSON}.ipynb"
    nbformat.write(notebook, path)
    ran = nbt.execute(path, timeout=120, extra_env={
        "XDG_CONFIG_HOME": str(tmp_path / "config"), sub.ENV_SERVICE: "http://127.0.0.1:9"})
    outputs = ran.cells[0].outputs
    assert [o.output_type for o in outputs] == ["execute_result"], outputs
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
