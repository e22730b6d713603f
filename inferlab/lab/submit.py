"""Hand a lesson to the course service for grading, from the notebook itself.

Every lesson ends with a "Submit this lesson" section: ``submit_form("05_kv_cache")`` shows a
small form (service address, API token, Submit button, a status line). From code::

    from inferlab.lab.submit import save_login, submit
    save_login("https://course.example.org", "<token from your dashboard>")   # once
    submit("05_kv_cache")        # sends the saved notebook, waits for the grade, shows it

What is sent: the notebook as it is saved on disk (in Colab: as it is in the browser), found by
``find_notebook``. Where the service and token come from, first match wins: the arguments, the
``INFERLAB_SERVICE`` / ``INFERLAB_TOKEN`` environment variables, the file that ``save_login``
writes (``~/.config/inferlab/service.json``, readable by you only). The token is only ever sent
in the ``Authorization`` header to the service it was saved for, and never printed.

Only the standard library talks to the service, so nothing more needs installing (Colab too).
Every failure raises ``SubmitError`` with a message that says what to do.
"""
from __future__ import annotations

import html
import http.client
import ipaddress
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

ENV_SERVICE = "INFERLAB_SERVICE"
ENV_TOKEN = "INFERLAB_TOKEN"
MAX_BYTES = 8 * 1024 * 1024       # the service refuses larger notebooks (HTTP 413)
STALE_AFTER_S = 180               # a notebook file older than this may miss unsaved work
HTTP_TIMEOUT_S = 30               # one request to the service
WAIT_TIMEOUT_S = 600              # waiting for the grade
POLL_S = 1.0                      # first pause between two questions about the grade
FINAL = ("graded", "error")
LESSON_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")

Report = Callable[[str], None]


class SubmitError(Exception):
    """A submission that could not be made; the message says what to do about it."""


# --- where the service and the token come from -------------------------------------------------

def login_path() -> Path:
    """The file ``save_login`` writes: ``~/.config/inferlab/service.json``."""
    config = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "inferlab" / "service.json"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_service(service: str) -> str:
    """``course.example.org/`` -> ``https://course.example.org``; plain http only for loopback
    (this computer), since the token travels with every request."""
    text = (service or "").strip().rstrip("/")
    if not text:
        raise SubmitError(_NO_SERVICE)
    if "://" not in text:
        host = urllib.parse.urlsplit("//" + text).hostname or ""
        text = ("http://" if _is_loopback(host) else "https://") + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubmitError(f"{service!r} is not a web address: the course service's address "
                          "looks like https://course.example.org")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SubmitError(f"{text} uses plain http, which would send your token unencrypted: use "
                          "the https:// address of the course service (plain http works only "
                          "for a service on this computer, e.g. http://127.0.0.1:8000)")
    if parts.query or parts.fragment:
        raise SubmitError(f"{text}: give the service's address without '?' or '#' parts")
    return text


_NO_SERVICE = ("No course service is set. Enter its address (e.g. https://course.example.org, "
               "from your instructor or the course page) in the form, or run once "
               "`from inferlab.lab.submit import save_login; save_login(\"<address>\", "
               "\"<token>\")`, or set the INFERLAB_SERVICE and INFERLAB_TOKEN environment "
               "variables.")


def _saved_login() -> dict:
    path = login_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise SubmitError(f"Cannot read {path} ({error}): delete it and run save_login(...) "
                          "again.") from None
    return data if isinstance(data, dict) else {}


def save_login(service: str, token: str) -> Path:
    """Remember the service address and your API token on this computer (a file only you can
    read, ``~/.config/inferlab/service.json``), so that ``submit`` needs neither."""
    service = normalize_service(service)
    token = _check_token(token)
    path = login_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"service": service, "token": token}, handle)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _check_token(token: str | None) -> str:
    token = (token or "").strip()
    if not token:
        raise SubmitError("No API token is set. Make one on your dashboard on the course service "
                          "(once your e-mail address is confirmed), copy it into the form, or "
                          "run save_login(\"<address>\", \"<token>\"), or set INFERLAB_TOKEN.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) > 126 for ch in token):
        raise SubmitError("The API token contains spaces, line breaks or unusual characters: "
                          "copy it again, or make a new one on your dashboard on the course "
                          "service.")
    return token


def resolve_login(service: str | None = None, token: str | None = None) -> tuple[str, str]:
    """(service address, token): from the arguments, else the environment variables, else the
    file ``save_login`` wrote. A saved token is used only for the service it was saved for."""
    saved = None
    if not service:
        service = os.environ.get(ENV_SERVICE, "").strip()
    if not service:
        saved = _saved_login()
        service = saved.get("service", "")
    if not service:
        raise SubmitError(_NO_SERVICE)
    service = normalize_service(service)
    if not token:
        token = os.environ.get(ENV_TOKEN, "").strip()
    if not token:
        saved = _saved_login() if saved is None else saved
        if saved.get("service") and normalize_service(saved["service"]) == service:
            token = saved.get("token", "")
    return service, _check_token(token)


# --- which notebook -----------------------------------------------------------------------------

def _colab_notebook() -> bytes | None:
    """The notebook as Colab holds it in the browser (unsaved edits included), or None outside
    Colab."""
    try:
        from google.colab import _message  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=60)
        content = reply["ipynb"]
    except Exception as error:  # noqa: BLE001 - any failure of Colab's bridge
        raise SubmitError(f"Colab did not hand over this notebook ({error}). Run "
                          "`from inferlab.lab.submit import submit; submit(\"<lesson>\")` in a "
                          "cell, or download the notebook (File > Download .ipynb) and upload "
                          "it on the course service's page.") from None
    return json.dumps(content, ensure_ascii=False).encode()


def _ipython_variable(name: str) -> str | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    value = shell.user_ns.get(name) if shell is not None else None
    return value if isinstance(value, str) and value else None


def _existing(candidate: str | None) -> Path | None:
    """A notebook path as jupyter-server gives it (absolute, or relative to where it started) ->
    the file, if it exists; else the file of that name in the working folder (the kernel runs in
    the notebook's folder)."""
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    for option in (path, Path.cwd() / path, Path.cwd() / path.name):
        if option.suffix == ".ipynb" and option.is_file():
            return option.resolve()
    return None


def notebook_path(lesson: str | None = None) -> Path:
    """The file of the running notebook: the one jupyter-server names (``JPY_SESSION_NAME``, or
    ``__session__`` in the kernel), VS Code's ``__vsc_ipynb_file__``, else ``<lesson>.ipynb`` in
    the working folder."""
    for candidate in (os.environ.get("JPY_SESSION_NAME"), _ipython_variable("__session__"),
                      _ipython_variable("__vsc_ipynb_file__")):
        found = _existing(candidate)
        if found:
            return found
    if lesson:
        fallback = Path.cwd() / f"{lesson}.ipynb"
        if fallback.is_file():
            return fallback.resolve()
        raise SubmitError(f"Cannot find this notebook's file: {fallback} does not exist. Run the "
                          f"notebook from its own folder, or pass its path: "
                          f"submit(\"{lesson}\", notebook=\"path/to/{lesson}.ipynb\").")
    raise SubmitError("Cannot tell which notebook this is: say which lesson, e.g. "
                      "submit(\"05_kv_cache\").")


def find_notebook(lesson: str | None = None, notebook: str | os.PathLike | None = None,
                  report: Report = print, now: float | None = None) -> tuple[bytes, str]:
    """(the notebook's bytes, where they came from). In Colab: the notebook in the browser.
    Elsewhere the saved file (``notebook`` if given, else ``notebook_path(lesson)``): you are
    reminded to save first, and warned when the file has not been saved for a few minutes."""
    if notebook is None:
        content = _colab_notebook()
        if content is not None:
            return content, "this Colab notebook"
        path = notebook_path(lesson)
    else:
        path = Path(notebook).expanduser()
        if not path.is_file():
            raise SubmitError(f"{path} does not exist: pass the path of your lesson notebook.")
    report(f"Submitting the saved file {path.name}: save the notebook first (Ctrl+S, or "
           "File > Save) - what is on disk is what gets graded.")
    age = (time.time() if now is None else now) - path.stat().st_mtime
    if age > STALE_AFTER_S:
        report(f"Warning: {path.name} was last saved {_duration(age)} ago. Changes made since "
               "are NOT submitted: save (Ctrl+S) and submit again if you changed it.")
    if lesson and not path.stem.startswith(lesson):
        report(f"Warning: the file {path.name} is submitted as lesson {lesson}.")
    return path.read_bytes(), str(path)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def lesson_of(path_or_name: str) -> str | None:
    """``.../05_kv_cache.ipynb`` -> ``05_kv_cache``; None when the name is not a lesson's."""
    stem = Path(path_or_name).stem
    return stem if LESSON_NAME.match(stem) else None


def _check_notebook(content: bytes, lesson: str) -> None:
    if len(content) > MAX_BYTES:
        raise SubmitError(_too_large(len(content)))
    try:
        data = json.loads(content)
    except ValueError:
        raise SubmitError(f"The file for {lesson} is not a notebook (not JSON): submit the "
                          ".ipynb file of the lesson.") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise SubmitError(f"The file for {lesson} is not a notebook (no cells): submit the "
                          ".ipynb file of the lesson.")


def _too_large(size: int | None) -> str:
    got = f" ({size / 2**20:.1f} MB)" if size else ""
    return (f"The notebook is too large{got}: the limit is {MAX_BYTES // 2**20} MB. Clear the "
            "outputs (Edit > Clear Outputs of All Cells, or Kernel > Restart and Clear Outputs), "
            "save, and submit again; large plots and printed tensors are the usual cause.")


# --- talking to the service ---------------------------------------------------------------------

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the token to another address and drop the upload: refuse it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise SubmitError(f"The service at {req.full_url} redirects to {newurl}: use the "
                          "address it redirects to as the service address.")


_OPENER = urllib.request.build_opener(_NoRedirects)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
              ) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type: ``files`` maps a field to (file name,
    content, content type)."""
    payload = [value.encode() for value in fields.values()]
    payload += [content for _, content, _ in files.values()]
    while True:
        boundary = f"inferlab-{uuid.uuid4().hex}"
        if not any(boundary.encode() in part for part in payload):
            break
    lines: list[bytes] = []
    for name, value in fields.items():
        lines += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                  .encode(), value.encode(), b"\r\n"]
    for name, (filename, content, kind) in files.items():
        lines += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: {kind}\r\n\r\n".encode(),
                  content, b"\r\n"]
    lines.append(f"--{boundary}--\r\n".encode())
    return b"".join(lines), f"multipart/form-data; boundary={boundary}"


def _detail(body: bytes) -> str:
    """The server's explanation: ``{"detail": "..."}`` (or a list of {"msg": ...}), else text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:300]
    detail = data.get("detail", data.get("message", "")) if isinstance(data, dict) else data
    if isinstance(detail, list):
        detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                           for item in detail)
    return str(detail).strip()[:300]


def _retry_after(error: urllib.error.HTTPError) -> int:
    value = error.headers.get("Retry-After", "") if error.headers else ""
    try:
        return max(1, int(float(value)))
    except ValueError:
        return 60


def request(service: str, token: str, method: str, path: str, body: bytes | None = None,
            content_type: str | None = None) -> dict:
    """One call to the service's API; its JSON answer, or ``SubmitError`` saying what to do."""
    url = service + path
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
               "User-Agent": "inferlab-notebook"}
    if content_type:
        headers["Content-Type"] = content_type
    call = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with _OPENER.open(call, timeout=HTTP_TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raise SubmitError(_http_error(service, error)) from None
    except urllib.error.URLError as error:
        raise SubmitError(_connection_error(service, error.reason, body)) from None
    except (OSError, http.client.HTTPException) as error:
        raise SubmitError(_connection_error(service, error, body)) from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SubmitError(f"{url} did not answer like the course service (no JSON object): is "
                          f"{service} the right address?")
    return data


def _http_error(service: str, error: urllib.error.HTTPError) -> str:
    code = error.code
    try:
        detail = _detail(error.read())
    except Exception:  # noqa: BLE001 - a broken error body still gives the status
        detail = ""
    if detail and not detail.endswith((".", "!", "?")):
        detail += "."
    said = f" The service says: {detail}" if detail else ""
    if code in (401, 403):
        return (f"The service did not accept your API token (HTTP {code}).{said} Check that you "
                f"copied the whole token, or make a new one on your dashboard on {service} (a "
                "new token replaces the old one) and enter it in the form, or run "
                "save_login(...) again.")
    if code == 413:
        return _too_large(None) + said
    if code == 422:
        return f"The service refused this submission (HTTP 422).{said or ' (no reason given)'}"
    if code == 429:
        wait = _retry_after(error)
        return (f"Too many submissions for now (HTTP 429): wait {wait} s and submit again."
                + said)
    if code == 404:
        return (f"{error.url} does not exist (HTTP 404): is {service} the course service's "
                f"address?{said}")
    if code >= 500:
        return (f"The course service failed (HTTP {code}).{said} Try again in a few minutes; "
                "if it keeps failing, tell your instructor.")
    return f"The service answered HTTP {code}.{said}"


def _connection_error(service: str, reason, body: bytes | None = None) -> str:
    text = str(reason)
    if isinstance(reason, SubmitError):
        return text
    if body and isinstance(reason, (BrokenPipeError, ConnectionResetError)):
        # A service that refuses a large upload answers 413 and closes before reading it all.
        return (f"{service} closed the connection while receiving the notebook: it is probably "
                "larger than the service accepts. " + _too_large(len(body)))
    if isinstance(reason, TimeoutError) or "timed out" in text:
        return (f"{service} did not answer within {HTTP_TIMEOUT_S} s (timeout). Check your "
                "internet connection and try again later; the service may be busy.")
    if isinstance(reason, ConnectionRefusedError) or "refused" in text.lower():
        return (f"Could not connect to {service}: connection refused. Is the course service "
                "running, and is the address (and port) right?")
    if "Name or service not known" in text or "getaddrinfo" in text or "nodename" in text:
        return (f"Could not find the host of {service}: is the address spelled right, and are "
                "you online?")
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
        return f"Secure connection to {service} failed ({text}): is the address right?"
    return f"Could not reach {service}: {text}. Is the address right, and are you online?"


# --- submitting ----------------------------------------------------------------------------------

def send(lesson: str, content: bytes, service: str, token: str) -> dict:
    """POST the notebook; the service's 202 answer (``id``, ``status``, ``url``)."""
    _check_notebook(content, lesson)
    body, kind = multipart({"lesson": lesson},
                           {"notebook": (f"{lesson}.ipynb", content, "application/x-ipynb+json")})
    answer = request(service, token, "POST", "/api/submissions", body, kind)
    if "id" not in answer:
        raise SubmitError(f"The service accepted the notebook but gave no submission number: "
                          f"is {service} the course service's address?")
    return answer


def wait_for_grade(service: str, token: str, submission: dict, timeout: float = WAIT_TIMEOUT_S,
                   report: Report = print, poll_s: float | None = None) -> dict:
    """Ask for the submission's state until it is graded (or failed) or ``timeout`` s passed;
    the last answer (its ``status`` still queued/grading after a timeout)."""
    deadline = time.monotonic() + timeout
    poll_s = POLL_S if poll_s is None else poll_s
    current, said = submission, None
    while True:
        try:
            current = {**submission, **request(service, token, "GET",
                                               f"/api/submissions/{submission['id']}")}
        except SubmitError as error:
            if "HTTP 429" not in str(error) or time.monotonic() > deadline:
                raise
            current = {**current}
        status = current.get("status")
        if status in FINAL:
            return current
        if status != said:
            report(f"Submission {submission['id']}: {status}...")
            said = status
        if time.monotonic() + poll_s > deadline:
            where = current.get("url") or f"{service}/submissions/{submission['id']}"
            report(f"Still {status} after {timeout:.0f} s: the grade will appear at {where}.")
            return current
        time.sleep(poll_s)
        poll_s = min(poll_s * 1.5, 5.0)


def format_result(result: dict) -> str:
    """A graded submission as text: the score, then each exercise's status and message."""
    lesson = result.get("lesson", "")
    status = result.get("status")
    lines = []
    if status == "graded":
        lines.append(f"{lesson}: {_points(result.get('score'))} / "
                     f"{_points(result.get('max_score'))} points")
    elif status == "error":
        reason = (result.get("error") or result.get("message") or result.get("detail")
                  or "no reason given")
        lines.append(f"{lesson}: the service could not grade this submission ({reason}).")
    else:
        lines.append(f"{lesson}: {status}")
    for test in result.get("tests") or []:
        message = " ".join(str(test.get("message") or "").split())
        if len(message) > 200:
            message = message[:197] + "..."
        lines.append(f"  {str(test.get('status', '')):<8} {test.get('grade_id', '')}: "
                     f"{_points(test.get('score'))} / {_points(test.get('points'))}"
                     + (f"  {message}" if message else ""))
    for note in result.get("notes") or []:
        lines.append(f"  note: {note}")
    if result.get("url"):
        lines.append(f"Details: {result['url']}")
    return "\n".join(lines)


def _points(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "?" if value is None else str(value)


def submit(lesson: str | None = None, *, service: str | None = None, token: str | None = None,
           wait: bool = True, notebook: str | os.PathLike | None = None,
           timeout: float = WAIT_TIMEOUT_S, report: Report = print) -> dict:
    """Send this lesson's notebook to the course service; with ``wait``, wait for the grade and
    show the score of every exercise. Returns the service's answer (a dict: ``status``,
    ``score``, ``max_score``, ``tests``...). Raises ``SubmitError`` with what to do on failure."""
    service, token = resolve_login(service, token)
    if lesson is None and notebook is not None:
        lesson = lesson_of(str(notebook))
    if lesson is None:
        found = _existing(os.environ.get("JPY_SESSION_NAME")) or _existing(
            _ipython_variable("__session__"))
        lesson = lesson_of(str(found)) if found else None
    if lesson is None:
        raise SubmitError("Say which lesson to submit, e.g. submit(\"05_kv_cache\").")
    if not LESSON_NAME.match(lesson):
        raise SubmitError(f"{lesson!r} is not a lesson name: they look like 05_kv_cache.")
    content, _ = find_notebook(lesson, notebook, report)
    submission = send(lesson, content, service, token)
    report(f"Submitted {lesson} ({len(content) / 1024:.0f} KB) as submission "
           f"{submission['id']}.")
    if not wait:
        return submission
    try:
        result = wait_for_grade(service, token, submission, timeout, report)
    except SubmitError as error:
        where = submission.get("url") or f"{service}/submissions/{submission['id']}"
        raise SubmitError(f"{error} (Submission {submission['id']} was received: its grade "
                          f"will appear at {where}.)") from None
    if result.get("status") in FINAL:
        report(format_result(result))
    return result


def progress(*, service: str | None = None, token: str | None = None) -> dict:
    """Your progress on the course service: best score per lesson and the certificate's address
    once the course is complete."""
    service, token = resolve_login(service, token)
    return request(service, token, "GET", "/api/progress")


# --- the form -----------------------------------------------------------------------------------

def _result_html(result: dict) -> str:
    status = result.get("status")
    if status != "graded":
        return f"<pre>{html.escape(format_result(result))}</pre>"
    rows = "".join(
        f"<tr><td>{html.escape(str(t.get('grade_id', '')))}</td>"
        f"<td>{html.escape(str(t.get('status', '')))}</td>"
        f"<td>{_points(t.get('score'))} / {_points(t.get('points'))}</td>"
        f"<td>{html.escape(str(t.get('message') or '')[:300])}</td></tr>"
        for t in result.get("tests") or [])
    notes = "".join(f"<br>note: {html.escape(str(note))}" for note in result.get("notes") or [])
    link = (f"<br><a href=\"{html.escape(result['url'])}\" target=\"_blank\">details</a>"
            if result.get("url") else "")
    return (f"<b>{html.escape(str(result.get('lesson', '')))}: {_points(result.get('score'))} / "
            f"{_points(result.get('max_score'))} points</b>"
            f"<table><tr><th>exercise</th><th>status</th><th>points</th><th>message</th></tr>"
            f"{rows}</table>{notes}{link}")


def submit_form(lesson: str, *, background: bool = True):
    """A small form to submit ``lesson``: the service's address, your API token, "remember on
    this computer", a Submit button and a status line that follows the grading. Building it
    contacts nothing; only the button does. Returns the widget (display it)."""
    import ipywidgets as w

    try:
        known_service, known_token = resolve_login()
    except SubmitError:
        known_token = ""
        try:
            known_service = os.environ.get(ENV_SERVICE) or _saved_login().get("service", "")
        except SubmitError:
            known_service = ""
    style = {"description_width": "110px"}
    layout = w.Layout(width="520px")
    service = w.Text(value=known_service, description="service",
                     placeholder="https://... (the course service's address)", style=style,
                     layout=layout)
    # The token is never put into the widget: widget state can be saved inside the notebook.
    token = w.Password(value="", description="API token", style=style, layout=layout,
                       placeholder=("saved token (leave empty)" if known_token
                                    else "from your dashboard on the course service"))
    remember = w.Checkbox(value=False, description="remember on this computer", indent=False)
    button = w.Button(description="Submit", button_style="primary", icon="upload")
    status = w.HTML(value=("Save the notebook (Ctrl+S) before you submit: the saved file is "
                           "what gets graded."))
    form = w.VBox([w.HTML(f"<b>Submit {html.escape(lesson)} for grading</b>"), service, token,
                   w.HBox([button, remember]), status])
    form.service, form.token, form.remember, form.button, form.status = (
        service, token, remember, button, status)
    form.worker = None
    notes: list[str] = []

    def say(text: str) -> None:
        notes.append(text)
        status.value = "<br>".join(html.escape(line) for line in notes[-4:])

    def fail(error: Exception) -> None:
        """Show what went wrong; the form survives anything (an unexpected error included)."""
        text = str(error) if isinstance(error, SubmitError) else \
            f"{error.__class__.__name__}: {error}"
        status.value = f"<span style=\"color:#b00\">{html.escape(text)}</span>"
        button.disabled = False

    def follow(address: str, key: str, submission: dict) -> None:
        try:
            result = wait_for_grade(address, key, submission, report=say)
        except Exception as error:  # noqa: BLE001 - the form must survive anything
            fail(error)
            return
        status.value = (_result_html(result) if result.get("status") in FINAL
                        else "<br>".join(html.escape(line) for line in notes[-2:]))
        button.disabled = False

    def on_click(_=None) -> None:
        notes.clear()
        button.disabled = True
        status.value = "Submitting..."
        try:
            address, key = resolve_login(service.value.strip() or None,
                                         token.value.strip() or None)
            if remember.value:
                save_login(address, key)
                say(f"Saved the address and token in {login_path()} (readable by you only).")
            content, _ = find_notebook(lesson, report=say)
            submission = send(lesson, content, address, key)
            say(f"Submitted as submission {submission['id']}; waiting for the grade...")
        except Exception as error:  # noqa: BLE001 - the form must survive anything
            fail(error)
            return
        if background:
            form.worker = threading.Thread(target=follow, args=(address, key, submission),
                                           daemon=True, name=f"inferlab-submit-{lesson}")
            form.worker.start()
        else:
            follow(address, key, submission)

    button.on_click(on_click)
    form.submit = on_click
    return form
