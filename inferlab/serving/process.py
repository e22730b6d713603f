"""Start a server from a notebook, wait until it answers, and always stop it. Lesson 10.

A model server (vLLM's or llama.cpp's OpenAI-compatible server) is a separate *process*: the
notebook starts it, talks to it over HTTP, and must stop it again - also when a cell fails
half-way, and also when the kernel is restarted. Four rules make that reliable:

1. **Loopback only.** The server listens on ``127.0.0.1``: reachable from this machine, never
   from the network. ``ServerProcess`` refuses any other host.
2. **Its own process group.** The server is started with ``start_new_session=True``, so it and
   every worker it spawns share one process group whose id is the server's pid. Stopping sends
   SIGTERM to that group, waits, then SIGKILLs whatever is left - by process id, never by name.
3. **Readiness, not sleep.** After starting, poll its health URL until it answers 200. If the
   process exits first, or the time runs out, raise ``ServerStartError`` with the end of its log,
   so the student sees *why* (a missing package, an occupied port, too little memory).
4. **Stop no matter what.** Use it as a context manager (``with ServerProcess(...) as server:``),
   which stops it when the block ends, with or without an exception; every server is also in a
   registry that ``atexit`` empties when the kernel exits; and on Linux the child asks the kernel
   to SIGTERM it if its parent dies (``PR_SET_PDEATHSIG``), which covers a killed kernel.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_RUNNING: dict[int, "ServerProcess"] = {}


class ServerStartError(RuntimeError):
    """The server did not come up; the message holds the reason and the end of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()  # looked up once here: the child between fork and exec should do little


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or the process already gone
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0); psutil tells them apart
        import psutil
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return True


class ServerProcess:
    """One server child process: ``start()`` (waits until ready), ``stop()``, or ``with``.

    ``command`` is the argument list (no shell); it must make the server listen on
    ``127.0.0.1:port``. ``ready_path`` is polled until it answers HTTP 200.
    """

    def __init__(self, name: str, command: list[str], port: int, *, host: str = LOOPBACK,
                 ready_path: str = "/health", ready_timeout: float = 180.0,
                 env: dict[str, str] | None = None):
        if host != LOOPBACK:
            raise ValueError(f"servers started by the course listen on {LOOPBACK} only, "
                             f"not {host!r}")
        if not command:
            raise ValueError("command must be a non-empty argument list")
        self.name, self.command, self.port, self.host = name, [str(c) for c in command], port, host
        self.ready_path, self.ready_timeout = ready_path, ready_timeout
        self.env = dict(os.environ, **(env or {}))
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self.failed = False  # a failed start keeps its log for reading; a clean stop removes it

    # ------------------------------------------------------------------------------ facts
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path or not self.log_path.is_file():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # --------------------------------------------------------------------------- start/stop
    def start(self) -> "ServerProcess":
        if self.running():
            return self
        handle, path = tempfile.mkstemp(prefix=f"inferlab-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        started = time.perf_counter()
        with os.fdopen(handle, "w") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env,
                                            preexec_fn=_child_setup)
        _RUNNING[self.process.pid] = self
        try:
            self.wait_ready()
        except BaseException:
            self.failed = True
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def wait_ready(self) -> None:
        """Poll ``url + ready_path`` until HTTP 200; raise ``ServerStartError`` if it never
        comes."""
        deadline = time.monotonic() + self.ready_timeout
        address = self.url + self.ready_path
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(f"{self.name} exited with code {code} before it answered on "
                                       f"{address}. Last lines of its log ({self.log_path}):\n"
                                       f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(address, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise ServerStartError(f"{self.name} did not answer on {address} "
                               f"within {self.ready_timeout:.0f} s "
                               f"(still starting? too slow a machine?). Last lines of its log "
                               f"({self.log_path}):\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the server's process group, wait up to ``grace`` s, then SIGKILL what is left."""
        if self.process is None:
            return
        pid = self.process.pid
        family = [pid] + _descendants(pid)
        if self.process.poll() is None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in family[1:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for target in family:  # workers that left the group or ignored SIGTERM
            if _alive(target):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        _RUNNING.pop(pid, None)
        if not self.failed and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"ServerProcess({self.name!r}, pid={self.pid}, url={self.url!r}, {state})"


def running_servers() -> list[ServerProcess]:
    """Servers this process started and has not stopped yet."""
    return [s for s in _RUNNING.values() if s.running()]


def stop_all() -> None:
    """Stop every server this process started (registered with ``atexit``)."""
    for server in list(_RUNNING.values()):
        server.stop()


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """``(ip, port)`` of every TCP socket in LISTEN state held by ``pid`` or its descendants."""
    import psutil
    found = []
    try:
        procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(set(found))


atexit.register(stop_all)
