"""The grading sandbox, tested by attempts to get out of it: every attempt must fail from inside.

The student's code runs in ``autograder.grading.sandbox.Sandbox`` (bubblewrap). Each test here
runs code there that tries to read what it must not see (solutions, the repository, the
gradebook, other students' work, the signing key, the instructor's home and environment), write
outside its scratch space, reach the network, outlive the sandbox, or exhaust the machine, and
checks from inside that the attempt failed and from outside that nothing changed.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from autograder.course import REPOSITORY
from autograder.grading import redact, sandbox, wire
from autograder.grading.sandbox import Limits, Sandbox, SandboxCrashed, SandboxTimeout

SECRET_NAME = "INFERLAB_TEST_GRADER_SECRET"
SECRET_VALUE = f"grader-secret-{uuid.uuid4().hex}"
SLEEP = ["sleep", "300"]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def available():
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def package(available):
    """The course package as the sandbox sees it (nothing redacted)."""
    folder = redact.redacted_copy([])
    yield folder
    _remove(folder.parent)


@pytest.fixture(scope="module")
def runtime(available):
    folder = sandbox.scratch_runtime()
    yield folder
    _remove(folder)


@pytest.fixture(scope="module")
def private():
    """What the grader has and the student must not see, outside /tmp (which the sandbox
    replaces anyway): a course root with a gradebook, solutions and another student's
    submission, and an issuer key folder."""
    base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else Path(tempfile.gettempdir())
    top = Path(tempfile.mkdtemp(prefix="inferlab-sandbox-test-", dir=base))
    root = top / "course-root"
    files = {
        "gradebook": root / "gradebook.db",
        "solution": root / "solutions" / "01_quantization" / "01_quantization.ipynb",
        "other student": root / "submitted" / "bob" / "01_quantization" / "01_quantization.ipynb",
        "autograded": root / "autograded" / "bob" / "01_quantization" / "grading.json",
        "issuer key": top / "issuer" / "issuer-key.json",
    }
    for name, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}: {SECRET_VALUE}\n")
    yield {"top": top, "root": root, **files}
    _remove(top)


def grader_environment(private) -> dict[str, str]:
    return {SECRET_NAME: SECRET_VALUE, "INFERLAB_ISSUER_DIR": str(private["issuer key"].parent),
            "INFERLAB_COURSE_ROOT": str(private["root"])}


@pytest.fixture(scope="module")
def box(package, runtime, private):
    """One sandbox for the attempts that leave it usable (reads, writes, network), started
    while the grader's environment holds a secret, ``$INFERLAB_ISSUER_DIR`` and
    ``$INFERLAB_COURSE_ROOT`` (set only for the start: other tests may share this process)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in grader_environment(private).items():
            patch.setenv(name, value)
        sb = Sandbox(package, runtime).__enter__()
    try:
        yield sb
    finally:
        sb.close()


def _remove(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------ helpers
ATTEMPT = '''
import json as _json


def _attempt(action):
    try:
        value = action()
    except BaseException as error:  # everything counts as a failed attempt
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    return {"ok": True, "value": repr(value)[:300]}
'''


def attempts(sb: Sandbox, actions: dict[str, str]) -> dict[str, dict]:
    """Run each action (a function body) in the sandbox: name -> {"ok": bool, ...}."""
    lines = [ATTEMPT, "_results = {}"]
    for i, (name, body) in enumerate(actions.items()):
        lines.append(f"def _action_{i}():\n"
                     + textwrap.indent(textwrap.dedent(body).strip(), "    "))
        lines.append(f"_results[{name!r}] = _attempt(_action_{i})")
    lines.append("result = _json.dumps(_results)")
    return json.loads(run(sb, "\n".join(lines)))


def run(sb: Sandbox, code: str, name: str = "result", timeout: float | None = None):
    """Execute ``code`` in the sandbox and return its global ``name`` (a plain value)."""
    reply = sb.request(("exec", code, "<attempt>"), timeout)
    assert reply[0] == "ok", reply
    reply = sb.request(("get", ("N", name)))
    assert reply[0] == "ok", reply
    return wire.Decoder().decode(reply[1])


def succeeded(results: dict[str, dict]) -> dict[str, dict]:
    return {name: r for name, r in results.items() if r["ok"]}


def reading(path: Path) -> str:
    return f"import os\nif os.path.isdir({str(path)!r}):\n    return os.listdir({str(path)!r})\n" \
           f"return open({str(path)!r}, 'rb').read(200)"


def sleepers() -> set[int]:
    """Process ids of the ``sleep 300`` processes alive now (zombies do not count)."""
    found = set()
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == SLEEP and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(proc.pid)
    return found


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# ------------------------------------------------------------------------------ reading
def test_solutions_and_the_repository_are_not_visible(box):
    paths = {
        "solution notebook": REPOSITORY / "solutions" / "01_quantization" / "01_quantization.ipynb",
        "solutions folder": REPOSITORY / "solutions",
        "lesson script": REPOSITORY / "lessons" / "01_quantization" / "01_quantization.py",
        "mutants": REPOSITORY / "lessons" / "01_quantization" / "mutants.py",
        "grader": REPOSITORY / "autograder" / "grading" / "checker.py",
        "tests": REPOSITORY / "tests" / "conftest.py",
        "git": REPOSITORY / ".git" / "HEAD",
        "pyproject": REPOSITORY / "pyproject.toml",
    }
    results = attempts(box, {name: reading(path) for name, path in paths.items()})
    assert not succeeded(results), results
    listing = run(box, f"import os\ntry:\n    result = os.listdir({str(REPOSITORY)!r})\n"
                       "except OSError:\n    result = []")
    shown = set(listing)
    assert not shown & {"solutions", "lessons", "autograder", "tests", ".git", "course",
                        "submitted", "autograded", "gradebook.db", "docs"}, shown


def test_gradebook_and_other_students_are_not_visible(box, private):
    names = ("gradebook", "solution", "other student", "autograded")
    actions = {name: reading(private[name]) for name in names}
    actions["course root"] = reading(private["root"])
    actions["sqlite"] = (f"import sqlite3\nc = sqlite3.connect('file:{private['gradebook']}"
                         "?mode=rw', uri=True)\nreturn c.execute('select 1').fetchall()")
    results = attempts(box, actions)
    assert not succeeded(results), results


def test_issuer_signing_key_is_not_visible(box, private, monkeypatch):
    from autograder.certificates.keys import default_issuer_dir

    monkeypatch.setenv("INFERLAB_ISSUER_DIR", grader_environment(private)["INFERLAB_ISSUER_DIR"])
    assert default_issuer_dir() == private["issuer key"].parent   # what the grader would use
    default = Path.home() / ".config" / "inferlab"
    results = attempts(box, {
        "key file": reading(private["issuer key"]),
        "key folder": reading(private["issuer key"].parent),
        "default folder": reading(default),
        "default issuer": reading(default / "issuer"),
        "environment": "import os\nreturn os.environ['INFERLAB_ISSUER_DIR']",
    })
    assert not succeeded(results), results


def test_instructor_home_is_not_visible(box):
    """Of the grader's home only the Python installation bound read-only may be there."""
    import inferlab

    home = Path.home()
    bound = [str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.executable,
                                               Path(inferlab.__file__).parent)]
    visible = run(box, textwrap.dedent(f"""
        import os
        home, bound = {str(home)!r}, {bound!r}
        result = []
        for folder, dirs, files in os.walk(home):
            if any(folder == b or folder.startswith(b + "/") for b in bound):
                dirs[:] = []
                continue
            keep = []
            for d in dirs:
                path = os.path.join(folder, d)
                if any(b == path or b.startswith(path + "/") for b in bound):
                    keep.append(d)
                else:
                    result.append(path)
            dirs[:] = keep
            result += [os.path.join(folder, f) for f in files]
        result = sorted(result)
    """))
    assert visible == [], visible
    real = sorted(p for p in home.iterdir() if not any(
        b == str(p) or b.startswith(f"{p}/") for b in bound))
    results = attempts(box, {str(p): reading(p) for p in real})
    assert not succeeded(results), results
    assert run(box, "import os\nresult = os.environ['HOME']") != str(home)


def test_grader_environment_is_not_inherited(box):
    assert SECRET_NAME not in psutil.Process(box.process.pid).environ()  # not even bwrap's
    inside = json.loads(run(box, "import os, json\nresult = json.dumps(dict(os.environ))"))
    assert SECRET_NAME not in inside
    assert not [k for k, v in inside.items() if SECRET_VALUE in v]
    for name in ("INFERLAB_ISSUER_DIR", "INFERLAB_COURSE_ROOT", "VIRTUAL_ENV", "SSH_AUTH_SOCK"):
        assert name not in inside, name


def test_grader_environment_is_not_readable_through_proc(box):
    found = run(box, textwrap.dedent(f"""
        import os
        result = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if {SECRET_VALUE.encode()!r} in open(f"/proc/{{pid}}/environ", "rb").read():
                        result.append(pid)
                except OSError:
                    pass
    """))
    assert found == [], f"the grader's secret is in /proc/{found}/environ"


def test_reference_implementation_source_is_not_readable(package, runtime):
    """The sandbox's package has the stub; the original source is nowhere to be read."""
    import inspect

    from inferlab.compress import quant

    original = inspect.getsource(quant.absmax_quantize)
    module_file = Path(quant.__file__).resolve()
    text = module_file.read_text()
    marker = next(line.strip() for line in original.splitlines()[1:]   # a line only it has
                  if len(line.strip()) > 20 and text.count(line.strip()) == 1)
    stubbed = redact.redacted_copy(["inferlab.compress.quant:absmax_quantize"])
    try:
        with Sandbox(stubbed, runtime) as sb:
            seen = json.loads(run(sb, textwrap.dedent(f"""
                import importlib.util, inspect, json, os, sys
                import inferlab.compress.quant as quant
                marker = {marker!r}
                out = {{"source": inspect.getsource(quant.absmax_quantize),
                        "file": open(quant.__file__).read()}}
                try:
                    quant.absmax_quantize(__import__("torch").ones(2, 2))
                    out["call"] = "returned"
                except Exception as error:
                    out["call"] = type(error).__name__
                pyc = os.path.join(os.path.dirname({str(module_file)!r}), "__pycache__")
                out["pycache"] = os.path.exists(pyc)
                found = []
                roots = [{str(REPOSITORY)!r}, {str(Path.home())!r}, "/tmp", "/scratch",
                         "/grading", "/var", "/opt", "/srv"]
                site = [p for p in sys.path if p.endswith("site-packages")]
                roots += [os.path.join(s, n) for s in site for n in os.listdir(s)
                          if "inferlab" in n.lower()]
                skip = {{os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}}
                for root in roots:
                    for folder, dirs, files in os.walk(root):
                        dirs[:] = [d for d in dirs
                                   if os.path.realpath(os.path.join(folder, d)) not in skip]
                        for name in files:
                            path = os.path.join(folder, name)
                            try:
                                with open(path, "rb") as f:
                                    if marker.encode() in f.read(4 << 20):
                                        found.append(path)
                            except OSError:
                                pass
                out["found"] = found
                result = json.dumps(out)
            """)))
    finally:
        _remove(stubbed.parent)
    assert "ReferenceImplementationUsed" in seen["source"] and marker not in seen["source"]
    assert marker not in seen["file"]
    assert seen["call"] == "ReferenceImplementationUsed"
    assert not seen["pycache"]
    assert seen["found"] == [], seen["found"]


def test_a_redacted_property_raises_when_read(runtime):
    stubbed = redact.redacted_copy(["inferlab.serving.latency:RequestTrace.ttft"])
    try:
        with Sandbox(stubbed, runtime) as sb:
            seen = run(sb, textwrap.dedent("""
                from inferlab.serving.latency import RequestTrace
                try:
                    result = repr(RequestTrace(0.0, [0.5, 1.0]).ttft)
                except Exception as error:
                    result = type(error).__name__
            """))
    finally:
        _remove(stubbed.parent)
    assert seen == "ReferenceImplementationUsed", seen


def test_a_stub_stays_a_stub_across_the_boundary(runtime):
    from autograder.grading.checker import Session, StudentCode
    from inferlab.compress import quant

    stubbed = redact.redacted_copy(["inferlab.compress.quant:absmax_quantize"])
    try:
        with Sandbox(stubbed, runtime) as sb:
            run(sb, "from inferlab.compress.quant import absmax_quantize\nresult = 0")
            received = Session(sb).ask(("get", ("N", "absmax_quantize")), "absmax_quantize")
    finally:
        _remove(stubbed.parent)
    assert received is not quant.absmax_quantize
    assert isinstance(received, StudentCode)


def test_student_code_cannot_name_objects_of_the_checker(box):
    """A function disguised by its __module__ and __qualname__ as an object a course module
    imports (``os.getcwd`` through ``inferlab.lab.settings``) is refused or stays a proxy."""
    from autograder.grading.checker import Session, StudentCode

    run(box, textwrap.dedent("""
        def disguised(*args, **kwargs):
            return 0
        disguised.__module__ = "inferlab.lab.settings"
        disguised.__qualname__ = "os.getcwd"
        result = 0
    """))
    try:
        received = Session(box).ask(("get", ("N", "disguised")), "disguised")
    except wire.WireError:
        return                                   # refused
    assert received is not os.getcwd
    assert isinstance(received, StudentCode)


# ------------------------------------------------------------------------------ writing
def _write(path: str) -> str:
    return (f"with open({path!r}, 'w') as f:\n    f.write('written from the sandbox')\n"
            "return 'wrote'")


def test_read_only_locations_cannot_be_written(box, package):
    import inferlab

    package_at = Path(inferlab.__file__).resolve().parent
    probe = f"sandbox-probe-{uuid.uuid4().hex[:8]}"
    targets = {
        "course package": package_at / f"{probe}.py",
        "course module": package_at / "compress" / "quant.py",
        "virtual environment": Path(sys.prefix) / probe,
        "site-packages": Path(sysconfig.get_paths()["purelib"]) / probe,
        "python": Path(sys.base_prefix) / probe,
        "system": Path("/usr/lib") / probe,
        "worker runtime": Path("/grading") / probe,
        "certificates": Path("/etc/ssl/certs") / probe,
    }
    before = (package_at / "compress" / "quant.py").read_bytes()
    results = attempts(box, {name: _write(str(path)) for name, path in targets.items()})
    assert not succeeded(results), results
    assert (package_at / "compress" / "quant.py").read_bytes() == before
    assert (package / "compress" / "quant.py").read_bytes() == before
    for name, path in targets.items():
        if path.name == probe:
            assert not path.exists(), name


def test_writes_elsewhere_leave_the_real_filesystem_unchanged(box):
    probe = f"sandbox-probe-{uuid.uuid4().hex[:8]}"
    targets = [Path("/") / probe, Path("/etc") / probe, Path.home() / probe,
               REPOSITORY / probe, Path("/dev/shm") / probe, Path("/tmp") / probe,
               Path("/scratch") / probe]
    try:
        attempts(box, {str(path): _write(str(path)) for path in targets})
        assert [p for p in targets if p.exists()] == []
    finally:
        for path in targets:
            if path.exists() and path.name == probe:
                path.unlink()


@pytest.mark.parametrize("folder", ["/", "/etc", "home", "repository", "/work", "/usr/local",
                                    "/dev"])
def test_only_scratch_and_tmp_are_writable(box, folder):
    folder = {"home": str(Path.home()), "repository": str(REPOSITORY)}.get(folder, folder)
    path = Path(folder) / f"sandbox-probe-{uuid.uuid4().hex[:8]}"
    try:
        results = attempts(box, {folder: _write(str(path))})
        assert not path.exists()                 # never on the real filesystem
    finally:
        if path.exists():
            path.unlink()
    if Path(folder).is_relative_to("/tmp"):
        return  # (a checkout under /tmp) inside, that is the sandbox's own private /tmp
    assert not succeeded(results), results


def test_scratch_space_is_limited(package, runtime):
    limits = Limits(scratch_bytes=8 * 2**20, file_bytes=64 * 2**20)
    with Sandbox(package, runtime, limits=limits) as sb:
        results = attempts(sb, {
            folder: f"with open({folder + '/big'!r}, 'wb') as f:\n"
                    f"    for _ in range(16):\n        f.write(b'x' * 2**20)\n        f.flush()"
            for folder in ("/scratch", "/tmp", "/dev/shm")})
    assert not succeeded(results), results


# ------------------------------------------------------------------------------ network
def test_no_network(box):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        results = attempts(box, {
            "grader's server": f"import socket\nreturn socket.create_connection("
                               f"('127.0.0.1', {port}), timeout=3).getpeername()",
            "resolve": "import socket\nreturn socket.getaddrinfo('example.com', 443)",
            "resolve pypi": "import socket\nreturn socket.gethostbyname('pypi.org')",
            "internet": "import socket\nreturn socket.create_connection(('1.1.1.1', 53), "
                        "timeout=3).getpeername()",
            "http": "import urllib.request\n"
                    f"return urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=3).read()",
        })
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for conn in accepted:
            conn.close()
    assert not succeeded(results), results
    assert accepted == [], "the grader's server saw a connection from the sandbox"


# ------------------------------------------------------------------------------ processes
def test_background_processes_die_with_the_sandbox(package, runtime):
    before = sleepers()
    with Sandbox(package, runtime) as sb:
        run(sb, textwrap.dedent(f"""
            import os, subprocess
            subprocess.Popen({SLEEP!r}, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = os.fork()
            if pid == 0:                      # double fork: the grandchild is nobody's child
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", {SLEEP!r})
                os._exit(0)
            os.waitpid(pid, 0)
            result = 0
        """))
        assert wait_for(lambda: len(sleepers() - before) >= 2, 10), "the attempt did not start"
        started = sleepers() - before
    assert wait_for(lambda: not (sleepers() & started), 10), "a background process survived"


def test_too_many_processes_end_in_sandbox_crashed(package, runtime):
    """A fork bomb, bounded to 128 processes so that a broken limit cannot take the machine."""
    before = sleepers()
    limits = Limits(processes=32)
    with Sandbox(package, runtime, limits=limits) as sb:
        run(sb, "result = 0")
        start = time.monotonic()
        with pytest.raises(SandboxCrashed, match="processes"):
            sb.request(("exec", textwrap.dedent(f"""
                import os, time
                child = False
                for _ in range(7):
                    if os.fork() == 0:
                        child = True
                if child:
                    os.execvp("sleep", {SLEEP!r})
                time.sleep(60)
            """), "<fork bomb>"))
        assert time.monotonic() - start < 30
        assert sb.process is None          # the sandbox was closed
    assert wait_for(lambda: not (sleepers() - before), 10), "forked processes survived"


def test_infinite_loop_ends_with_timeout(package, runtime):
    with Sandbox(package, runtime, limits=Limits(request_seconds=3)) as sb:
        run(sb, "result = 0", timeout=120)   # the first request also waits for the start-up
        worker = psutil.Process(sb.process.pid).children(recursive=True)
        start = time.monotonic()
        with pytest.raises(SandboxTimeout):
            sb.request(("exec", "while True:\n    pass", "<loop>"))
        assert 2.5 < time.monotonic() - start < 15
        assert sb.process is None
    assert wait_for(lambda: not [p for p in worker if p.is_running()
                                 and p.status() != psutil.STATUS_ZOMBIE], 10)


def test_cpu_time_is_limited(package, runtime):
    limits = Limits(cpu_seconds=5, request_seconds=120)
    with Sandbox(package, runtime, limits=limits) as sb:
        run(sb, "result = 0")
        start = time.monotonic()
        with pytest.raises(SandboxCrashed):
            sb.request(("exec", "while True:\n    pass", "<loop>"))
        assert time.monotonic() - start < 60


def test_memory_over_the_limit_fails(package, runtime):
    limit = 6 * 2**30
    with Sandbox(package, runtime, limits=Limits(memory_bytes=limit)) as sb:
        for code in (f"big = bytearray({limit + 2**30})",
                     f"import torch\nbig = torch.ones({limit + 2**30}, dtype=torch.uint8)",
                     f"import numpy\nbig = numpy.ones({limit + 2**30}, dtype=numpy.uint8)"):
            reply = sb.request(("exec", code, "<memory>"))
            assert reply[0] == "error" and reply[1] in ("MemoryError", "RuntimeError"), reply[:3]
        assert run(sb, "result = 1 + 1") == 2        # still answering


def test_huge_output_is_capped(package, runtime):
    limits = Limits(output_bytes=4096)
    with Sandbox(package, runtime, limits=limits) as sb:
        run(sb, "import sys\nsys.stdout.write('x' * 10_000_000)\n"
                "sys.stderr.write('y' * 1_000_000)\nresult = 0")
    assert len(sb.output) <= 4096
    assert sb.output_dropped >= 11_000_000 - 4096
    assert "more bytes of output not kept" in sb.output_text()
    assert len(sb.output_text()) < 4096 + 200


def test_the_kernel_refuses_forks_past_the_task_limit(package, runtime):
    """Where the grader may make a pids control group, a fork past ``Limits.tasks`` fails in the
    student's code at once (the checker's count of processes is the limit everywhere else)."""
    limits = Limits(tasks=48, processes=10_000)
    with Sandbox(package, runtime, limits=limits) as sb:
        if sb.pids.path is None:
            pytest.skip("no pids control group can be made on this machine")
        group = sb.pids.path
        forked = run(sb, textwrap.dedent("""
            import os, time
            children = []
            try:
                for _ in range(200):
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(60)
                        os._exit(0)
                    children.append(pid)
            except OSError:
                pass
            result = len(children)
        """))
    assert 0 < int(forked) < 48
    assert not group.exists()            # removed with the sandbox
