"""The sandbox a student's code runs in: Linux namespaces through bubblewrap, and resource limits.

What the student's code can see and do (the threat model is in ``docs/grading.md``):

* files: the operating system's programs and libraries, Python and the course's virtual
  environment, the embedded model, all read-only; the course package with the reference
  implementations of the lesson's exercises removed; a private, size-limited, empty scratch
  folder (``/scratch``, also ``$HOME`` and ``/tmp``) that is thrown away afterwards. Not there:
  ``solutions/``, the lesson sources, the gradebook, other students' submissions, the signing key,
  the instructor's home and environment variables.
* no network (a namespace of its own with only an unconfigured loopback), its own process ids,
  hostname and IPC; it runs as an unprivileged user with no capabilities.
* limits: CPU seconds, address space, file size, open files (kernel resource limits); processes
  and threads (a pids control group where the machine allows one, and the checker's own count of
  the sandbox's processes everywhere); a wall-clock deadline per request and per lesson; the
  output kept (``Limits``).
* every process it starts dies with it: the sandbox is its own PID namespace, whose first process
  takes all others down when it exits, and it is killed when grading the lesson ends.
"""
from __future__ import annotations

import atexit
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .worker import write_message

NOBODY = 65534
BWRAP = "bwrap"


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says what to do."""


class SandboxTimeout(TimeoutError):
    """The student's code ran past its deadline."""


class SandboxCrashed(RuntimeError):
    """The student's process ended (or closed its channel) in the middle of grading."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 300          # CPU time of any one process
    memory_bytes: int = 6 * 2**30   # address space of any one process (torch maps a lot)
    file_bytes: int = 64 * 2**20    # largest file it may write
    scratch_bytes: int = 256 * 2**20
    open_files: int = 256
    processes: int = 32             # processes alive at once (counted by the checker)
    tasks: int = 256                # processes and threads, enforced by the kernel (PidsGroup)
    output_bytes: int = 64 * 2**10  # stdout + stderr kept for the report
    request_seconds: float = 120.0  # wall clock for one request (a cell, a call)
    lesson_seconds: float = 300.0   # wall clock for all of one lesson's requests
    start_seconds: float = 120.0    # for the sandbox to start (Python, torch) on a busy machine


def bwrap_path() -> str:
    found = shutil.which(BWRAP)
    if not found:
        raise SandboxUnavailable(
            "grading needs bubblewrap (the `bwrap` program) to isolate student code: install it "
            "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or run "
            "`make setup`, which installs it when it can")
    return found


def _read_only_roots() -> list[str]:
    """System folders and Python itself (outside any home folder but its own installation)."""
    roots = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives",
             "/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/certs"]
    roots += [sys.base_prefix, sys.prefix, os.path.realpath(sys.executable)]
    return [r for r in dict.fromkeys(roots) if os.path.exists(r)]


class PidsGroup:
    """A pids control group for one sandbox, where the machine lets the grader make one (as root,
    with cgroup v1's pids hierarchy or a cgroup v2 tree that delegates the pids controller): the
    kernel then refuses any fork past ``limit`` tasks (threads count). Elsewhere the checker's
    count of the sandbox's processes is the limit."""

    ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

    def __init__(self, limit: int):
        self.path: Path | None = None
        for root in self.ROOTS:
            delegated = root / "cgroup.subtree_control"
            if not (root / "cgroup.procs").exists() or (
                    delegated.exists() and "pids" not in delegated.read_text()):
                continue
            path = root / f"inferlab-sandbox-{os.getpid()}-{id(self):x}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
                continue
            self.path = path
            return

    def join(self) -> None:
        """Called in the child before it starts bwrap: it and all it starts are in the group."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        if self.path is None:
            return
        for _ in range(50):   # the kernel lets a group go once its last task has exited
            try:
                self.path.rmdir()
                break
            except OSError:
                time.sleep(0.05)
        self.path = None


class Sandbox:
    """One sandboxed worker process; use as a context manager.

    ``package`` is the folder bound where the course package normally lives (a copy without the
    exercises' reference implementations); ``runtime`` holds the worker's own modules; ``shared``
    are extra read-only folders (the embedded model's cache).
    """

    def __init__(self, package: Path, runtime: Path, shared: list[Path] = (),
                 limits: Limits | None = None, threads: int = 1):
        import inferlab
        self.limits = limits or Limits()
        self.package_at = Path(inferlab.__file__).resolve().parent
        self.package, self.runtime, self.shared = Path(package), Path(runtime), list(shared)
        self.threads = threads
        self.output = bytearray()
        self.output_dropped = 0
        self.process: subprocess.Popen | None = None
        self.deadline: float | None = None   # time.monotonic() after which every request fails

    def command(self) -> list[str]:
        cmd = [bwrap_path(), "--unshare-all", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--hostname", "sandbox",
               "--uid", str(NOBODY), "--gid", str(NOBODY)]
        # The private file systems first: what is bound afterwards may lie below them (a
        # checkout or virtual environment under /tmp stays visible, read-only).
        cmd += ["--proc", "/proc", "--dev", "/dev",
                "--size", str(self.limits.scratch_bytes), "--tmpfs", "/dev/shm",
                "--size", str(self.limits.scratch_bytes), "--tmpfs", "/scratch",
                "--size", str(self.limits.scratch_bytes), "--tmpfs", "/tmp"]
        for root in _read_only_roots():
            cmd += ["--ro-bind", root, root]
        cmd += ["--ro-bind", str(self.package), str(self.package_at)]
        cmd += ["--ro-bind", str(self.runtime), "/grading"]
        for folder in self.shared:
            if Path(folder).exists():
                cmd += ["--ro-bind", str(folder), str(folder)]
        cmd += ["--remount-ro", "/", "--remount-ro", "/dev",
                "--chdir", "/scratch", "--clearenv",
                "--setenv", "HOME", "/scratch", "--setenv", "TMPDIR", "/tmp",
                "--setenv", "PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "--setenv", "PYTHONPATH", "/grading",
                "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONUNBUFFERED", "1",
                "--setenv", "INFERLAB_GRADING", "1",
                "--setenv", "INFERLAB_FAST", "1",
                "--setenv", "INFERLAB_THREADS", str(self.threads),
                "--setenv", "OMP_NUM_THREADS", str(self.threads),
                "--setenv", "HF_HUB_OFFLINE", "1", "--setenv", "TRANSFORMERS_OFFLINE", "1"]
        from inferlab.lab.settings import cache_dir
        cmd += ["--setenv", "INFERLAB_CACHE", str(cache_dir())]
        cmd += ["--", sys.executable, "-m", "autograder.grading.worker"]
        return cmd

    def _limit(self):  # runs in the child before bwrap starts: limits are inherited
        lim = self.limits
        for what, value in ((resource.RLIMIT_CPU, lim.cpu_seconds),
                            (resource.RLIMIT_AS, lim.memory_bytes),
                            (resource.RLIMIT_FSIZE, lim.file_bytes),
                            (resource.RLIMIT_NOFILE, lim.open_files),
                            (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(what, (value, value))
        os.setsid()

    # ----------------------------------------------------------------------------- lifetime
    def __enter__(self):
        self.pids = PidsGroup(self.limits.tasks)
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        cmd = self.command()
        # The worker reads requests on fd 3 and answers on fd 4.
        # bwrap itself (the sandbox's process 1, readable in /proc/1/environ) gets no variable
        # of the grader's: its children's environment is set by --clearenv/--setenv.
        self.process = subprocess.Popen(
            cmd, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(3, 4), preexec_fn=self._fds_and_limits(to_worker_r, from_worker_w))
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.requests, self.replies = to_worker_w, from_worker_r
        self._reader = threading.Thread(target=self._collect_output, daemon=True)
        self._reader.start()
        try:
            ready = self._receive(self.limits.start_seconds, "the sandbox did not start in")
        except BaseException:
            self.close()
            raise
        if ready != ("ready",):
            self.close()
            raise SandboxCrashed("the sandbox started but did not say it was ready")
        return self

    def _fds_and_limits(self, read_end: int, write_end: int):
        def child():
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)
            self._limit()
            self.pids.join()
        return child

    def _collect_output(self):
        stream = self.process.stdout
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            room = self.limits.output_bytes - len(self.output)
            self.output += chunk[:max(room, 0)]
            self.output_dropped += max(len(chunk) - max(room, 0), 0)

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.process is None:
            return
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)   # bwrap and its PID namespace
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._reader.join(timeout=5)
        self.pids.remove()
        self.process = None

    def process_count(self) -> int:
        """Processes alive in the sandbox (the kernel's process-count limit cannot tell the
        sandbox's processes from the grader's when both run as the same user)."""
        import psutil
        try:
            return len(psutil.Process(self.process.pid).children(recursive=True))
        except psutil.Error:
            return 0

    def output_text(self) -> str:
        text = self.output.decode("utf-8", "replace")
        if self.output_dropped:
            text += f"\n[... {self.output_dropped} more bytes of output not kept]"
        return text

    # ------------------------------------------------------------------------------ requests
    def request(self, message, timeout: float | None = None):
        """Send one request; return the worker's reply as a plain tree."""
        timeout = self.limits.request_seconds if timeout is None else timeout
        if self.deadline is not None:
            timeout = min(timeout, max(self.deadline - time.monotonic(), 0.0))
        try:
            write_message(self.requests, wire.dumps(message))
        except (BrokenPipeError, OSError):
            raise SandboxCrashed(self._ended()) from None
        return self._receive(timeout, "your code ran past its time: more than")

    def _receive(self, timeout: float, late: str):
        """The next message from the worker, all of it before the deadline; a process that
        dies, stalls half-way through a message or sends one that is not plain data has
        crashed (and the sandbox is closed)."""
        deadline = time.monotonic() + timeout
        try:
            header = self._read(4, deadline, timeout, late)
            data = self._read(struct.unpack(">I", header)[0], deadline, timeout, late)
            return wire.loads(data)
        except wire.WireError as error:
            self.close()
            raise SandboxCrashed(f"your code's process sent a message the grader cannot read "
                                 f"({error})") from None

    def _read(self, n: int, deadline: float, timeout: float, late: str) -> bytes:
        if n > wire.MAX_MESSAGE:
            raise wire.WireError(f"a message of {n} bytes is over the limit")
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise SandboxTimeout(f"{late} {timeout:.0f} s (a request may take "
                                     f"{self.limits.request_seconds:.0f} s, a lesson "
                                     f"{self.limits.lesson_seconds:.0f} s)")
            ready, _, _ = select.select([self.replies], [], [], min(remaining, 0.1))
            if not ready:
                if self.process.poll() is not None:
                    raise SandboxCrashed(self._ended())
                if self.process_count() > self.limits.processes:
                    self.close()
                    raise SandboxCrashed(f"your code started more than "
                                         f"{self.limits.processes} processes at once")
                continue
            chunk = os.read(self.replies, min(left, 1 << 20))
            if not chunk:
                raise SandboxCrashed(self._ended())
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _ended(self) -> str:
        code = self.process.poll() if self.process else None
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGXCPU": "it used more CPU time than allowed",
                    "SIGKILL": "it was killed (memory or time limit)",
                    "SIGSEGV": "it crashed"}.get(name, "")
            return f"your code's process ended by {name}" + (f": {hint}" if hint else "")
        return f"your code's process ended (exit status {code}) before answering"


def check_available() -> None:
    """Raise :class:`SandboxUnavailable` unless a sandbox can start on this machine."""
    cmd = [bwrap_path(), "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
           "--uid", str(NOBODY), "--", "true"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxUnavailable(
            "bubblewrap cannot create namespaces on this machine "
            f"({result.stderr.strip()[:200]}); allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or grade in a container that permits them")


def scratch_runtime() -> Path:
    """A folder with the worker's own modules (and nothing else of the grader) for /grading."""
    runtime = Path(tempfile.mkdtemp(prefix="inferlab-runtime-"))
    here = Path(wire.__file__).parent     # this package: wire.py and worker.py
    target = runtime / "autograder" / "grading"
    target.mkdir(parents=True)
    (runtime / "autograder" / "__init__.py").write_text("")
    (target / "__init__.py").write_text("")
    for name in ("wire.py", "worker.py"):
        shutil.copy2(here / name, target / name)
    atexit.register(shutil.rmtree, runtime, True)
    os.chmod(runtime, 0o755)
    for folder in (runtime / "autograder", target):
        os.chmod(folder, 0o755)
    return runtime
