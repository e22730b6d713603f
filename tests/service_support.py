"""Pieces shared by the course service's tests and its load benchmark: a real SMTP server that
keeps what it receives, the service started for real (``python -m autograder serve``), students
made directly in the database (as a fixture would), and the solution notebooks.
"""
from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from inferlab.serving.process import free_port

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.name for p in (REPO / "solutions").iterdir()
                 if (p / f"{p.name}.ipynb").is_file())
AUTH_LINK = re.compile(r"https?://\S+/auth\?token=[A-Za-z0-9_-]+")


def solution(lesson: str) -> Path:
    return REPO / "solutions" / lesson / f"{lesson}.ipynb"


# ------------------------------------------------------------------------------------ e-mail
class MailBox:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.changed = threading.Condition()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):   # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()
        return "250 OK"

    def start(self) -> MailBox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30) -> email.message.Message:
        """The ``count``-th message to ``address`` (waiting for it to arrive)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.to(address)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no e-mail #{count} to {address} within {timeout} s "
                                         f"(received: {[m['To'] for m in self.messages]})")
                self.changed.wait(left)
            return self.to(address)[count - 1]

    def link(self, address: str, count: int = 1, timeout: float = 30) -> str:
        """The /auth link of the ``count``-th message to ``address``."""
        body = self.wait_for(address, count, timeout).get_content()
        found = AUTH_LINK.findall(body)
        assert len(found) == 1, f"expected one /auth link in the e-mail, found {found}: {body}"
        return found[0]


# ------------------------------------------------------------------------------ the service
class Service:
    """``python -m autograder serve`` in a process group of its own, on a free port."""

    def __init__(self, data: Path, mail: str = "console", workers: int = 2,
                 admins=("admin@example.org",), env: dict | None = None, log: Path | None = None,
                 port: int | None = None):
        self.data, self.port = Path(data), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log or self.data.parent / f"service-{self.port}.log")
        command = [sys.executable, "-m", "autograder", "serve", "--port", str(self.port),
                   "--data", str(self.data), "--mail", mail, "--workers", str(workers),
                   "--log-level", "warning"]
        for address in admins:
            command += ["--admin", address]
        environment = {k: v for k, v in os.environ.items()
                       if not k.startswith("INFERLAB_SERVICE_")}
        environment.update(env or {})
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.data.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "ab")
        self.process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=self._out,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> Service:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the service did not start (exit {self.process.poll()}):\n"
                                     + self.output())
            time.sleep(0.3)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._out.close()

    def __enter__(self) -> Service:
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()


def running_in_group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that still run (zombies left out)."""
    listing = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True,
                             check=True).stdout
    return [int(pid) for pid, group, stat in (line.split()[:3] for line in listing.splitlines())
            if int(group) == pgid and not stat.startswith("Z")]


# ------------------------------------------------------------------------------- the database
def make_students(db_url: str, count: int, prefix: str = "load") -> list[tuple[int, str]]:
    """``count`` confirmed students with API tokens, written straight into the service's
    database (migrated first): [(student id, API token)]."""
    from autograder.service import security
    from autograder.service.db import Database
    from autograder.service.models import Student, utcnow

    database = Database(db_url)
    database.migrate()
    made = []
    with database.session() as s:
        for i in range(count):
            token = security.new_token()
            row = Student(name=f"Student {prefix} {i}", email=f"{prefix}{i}@example.org",
                          created_at=utcnow(), confirmed_at=utcnow(),
                          token_hash=security.digest(token), is_admin=False)
            s.add(row)
            s.flush()
            made.append((row.id, token))
    database.engine.dispose()
    return made
