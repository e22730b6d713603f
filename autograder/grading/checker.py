"""The trusted checker: runs a lesson's tests against a student's code that lives in a sandbox.

The tests (visible and hidden, from the source notebook) execute here, in a namespace the student
cannot touch. The names an answer must define are bound to what the student's code produced:
plain data is copied in, anything else (a function, a class, an instance) becomes a
:class:`StudentCode` proxy whose calls run in the sandbox and whose results come back as data.
So nothing a student's cell does to builtins, libraries, IPython, exceptions or the course
package can change a verdict: those changes stay in the sandbox's process.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import wire
from .plan import Plan, lesson_slice
from .sandbox import Limits, Sandbox, SandboxCrashed, SandboxTimeout

REFERENCE_ERROR = "ReferenceImplementationUsed"


class StudentCodeError(Exception):
    """An exception raised by the student's code whose type is not one of Python's own."""


class GraderError(RuntimeError):
    """A test passed something to the student's code that cannot be sent (a grader bug)."""


@dataclass
class TestResult:
    grade_id: str
    points: float
    score: float
    status: str          # "passed", "failed", "error", "timeout", "crashed", "reference"
    message: str = ""    # why, in one line, for the student and the instructor
    details: str = ""    # traceback or output worth showing


@dataclass
class LessonResult:
    lesson: str
    tests: list[TestResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0
    error: str = ""      # the whole lesson could not be graded (an unreadable file)
    file: str = ""       # the notebook graded
    timestamp: str = ""  # when it was submitted (nbgrader's timestamp.txt, else the file's time)
    sources: dict = field(default_factory=dict)   # grade_id -> the student's answer graded

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LessonResult:
        tests = [TestResult(**t) for t in data.pop("tests")]
        return cls(tests=tests, **data)


# ------------------------------------------------------------------------------ proxies
class StudentCode:
    """Something that lives in the student's sandbox: calls go there, data comes back."""

    __slots__ = ("_session", "_target", "_label")

    def __init__(self, session: Session, target: tuple, label: str):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_label", label)

    def __call__(self, *args, **kwargs):
        return self._session.call(self._target, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            # protocols that libraries probe for (__torch_function__, __array__, ...): a
            # student's object takes part in none of them
            raise AttributeError(name)
        return self._session.ask(("getattr", self._target, name), f"{self._label}.{name}")

    def __setattr__(self, name, value):
        self._session.ask(("setattr", self._target, name, self._session.outgoing(value)))

    def __iter__(self):
        return self._session.ask(("iter", self._target), f"iter({self._label})")

    def __next__(self):
        return self._session.ask(("next", self._target), self._label)

    def __len__(self):
        value = self._session.ask(("len", self._target), self._label)
        if type(value) is not int:
            raise TypeError("len() of your object is not an int")
        return value

    def __getitem__(self, key):
        return self._session.ask(("getitem", self._target, self._session.outgoing(key)),
                                 f"{self._label}[...]")

    def __bool__(self):
        raise TypeError(f"{self._label} is not a plain value (bool, number, list, tensor...): "
                        "the tests cannot use it as True or False")

    def __repr__(self):
        return f"<your {self._label}>"


class Session:
    """The checker's side of the conversation with one sandbox."""

    def __init__(self, sandbox: Sandbox, refused: frozenset = frozenset()):
        self.sandbox = sandbox
        self.refused = refused      # the lesson's reference classes: never rebuilt from data
        self.storages: dict = {}    # the sandbox's tensor storages, mirrored by their number

    def proxy(self, node) -> StudentCode:
        return StudentCode(self, ("H", node[1]), str(node[2]))

    def outgoing(self, value):
        return wire.Encoder(self._cannot_send).encode(value)

    def _cannot_send(self, obj):
        if isinstance(obj, StudentCode) and obj._session is self:
            return obj._target
        raise GraderError(f"a test passes a {type(obj).__name__} to the student's code, "
                          "which cannot cross the sandbox")

    def ask(self, request, label: str = "your code"):
        reply = self.sandbox.request(request)
        if reply[0] == "stop":
            raise StopIteration
        self._raise_if_error(reply)
        decoder = wire.Decoder(handle=self.proxy, storages=self.storages, course_functions=False,
                               refused=self.refused)
        return decoder.decode(reply[1])

    def call(self, target, args, kwargs):
        encoder = wire.Encoder(self._cannot_send, number_new=True)
        request = ("call", target, encoder.encode(list(args)), encoder.encode(dict(kwargs)))
        reply = self.sandbox.request(request)
        self._raise_if_error(reply)
        decoder = wire.Decoder(originals=encoder.sent, handle=self.proxy, storages=self.storages,
                               course_functions=False, refused=self.refused)
        result = decoder.decode(reply[1])
        decoder.decode(reply[2])     # the arguments' new state, written into the originals
        if len(reply) > 3 and reply[3]:
            number, refs = reply[3]
            inputs = [encoder.sent[ref] for ref in refs]
            result = _through_sandbox(self, number, result, inputs)
        return result

    def backward(self, number, gradient, inputs):
        """The gradients of ``inputs`` computed by the sandbox's autograd graph."""
        grads = self.ask(("backward", number, self.outgoing(gradient)), "backward")
        return [None if g is None else g.to(i.dtype) for g, i in zip(grads, inputs)]

    @staticmethod
    def _raise_if_error(reply):
        if type(reply) is not tuple or not reply or reply[0] not in ("ok", "error"):
            raise SandboxCrashed("the student's process answered nonsense")
        if reply[0] == "ok":
            return
        _, name, message, details = (list(reply) + ["", "", ""])[:4]
        name, message = str(name), str(message)
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)
                and cls.__module__ == "builtins"):
            cls = StudentCodeError
            message = f"{name}: {message}"
        try:
            error = cls(message)
        except Exception:  # noqa: BLE001 - an exception type with another signature
            error = StudentCodeError(f"{name}: {message}")
        error.student_type = name
        error.student_traceback = str(details)
        raise error


def _through_sandbox(session: Session, number: int, value, inputs: list):
    """``value`` as an autograd result of ``inputs``, its backward pass computed in the sandbox
    (gradients come back as data, like every other value)."""
    import torch

    class ThroughSandbox(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            return value.detach().clone()

        @staticmethod
        def backward(ctx, gradient):
            return tuple(session.backward(number, gradient, inputs))

    return ThroughSandbox.apply(*inputs)


# ------------------------------------------------------------------------------ a lesson
def grade_lesson(plan: Plan, answers: dict[str, str], package: Path, runtime: Path,
                 shared: list[Path] = (), limits: Limits | None = None,
                 notes: list[str] | None = None, references: list[str] = ()) -> LessonResult:
    """Run the plan: answers in the sandbox, tests here; one result per test cell.

    If the student's process crashes or runs out of time, a new sandbox is started and the answer
    cells that ran cleanly are replayed, so one bad cell costs only its own tests. ``references``
    (the names ``package`` has stubbed) are classes the checker never rebuilds from data."""
    limits = limits or Limits()
    refused = frozenset(f"{module}:{qualname.split('.')[0]}" for module, _, qualname in (
        ref.partition(":") for ref in references))
    result = LessonResult(plan.lesson, notes=list(notes or []))
    start = time.perf_counter()
    deadline = time.monotonic() + limits.lesson_seconds
    namespace: dict = {"__name__": "__main__"}
    ran: list[tuple[str, str]] = []          # (filename, code) of answer cells that ran
    state = {"sandbox": None, "session": None, "broken": "",
             "lost": {}}   # name -> (status, why) for names of answer cells that never finished
    outputs: list[str] = []

    def open_sandbox():
        if state["sandbox"] is not None:
            outputs.append(state["sandbox"].output_text())
            state["sandbox"].close()
        sandbox = Sandbox(package, runtime, shared, limits).__enter__()
        sandbox.deadline = deadline
        state.update(sandbox=sandbox, session=Session(sandbox, refused), broken="")
        for filename, code in ran:
            reply = sandbox.request(("exec", code, filename))
            if reply[0] != "ok":
                raise SandboxCrashed("replaying your earlier answers failed")
        return sandbox

    try:
        open_sandbox()
        for step in plan.steps:
            if step.kind == "answer":
                _run_answer(step, answers, state, ran, namespace, result, open_sandbox)
            else:
                result.tests.append(_run_test(step, namespace, state, open_sandbox))
    finally:
        if state["sandbox"] is not None:
            outputs.append(state["sandbox"].output_text())
            state["sandbox"].close()
    result.output = "".join(outputs)[-limits.output_bytes:]
    result.seconds = time.perf_counter() - start
    return result


def _run_answer(step, answers, state, ran, namespace, result, open_sandbox):
    code = answers.get(step.grade_id)
    if code is None:
        result.notes.append(f"answer cell {step.grade_id!r} was not found: graded as unanswered")
        return
    filename = f"<answer {step.grade_id}>"
    context = lesson_slice(code, step.context)
    program = f"{context}\n{code}" if context else code
    try:
        if state["broken"]:
            open_sandbox()
        reply = state["sandbox"].request(("exec", program, filename))
    except (SandboxTimeout, SandboxCrashed) as error:
        result.notes.append(f"answer cell {step.grade_id!r}: {error}")
        state["broken"] = str(error)
        status = "timeout" if isinstance(error, SandboxTimeout) else "crashed"
        for name in step.names:
            state["lost"][name] = (status, f"answer cell {step.grade_id!r}: {error}")
        return
    if reply[0] == "ok":
        ran.append((filename, program))
    else:
        message = f"{reply[1]}: {reply[2]}" if len(reply) > 2 else str(reply)
        result.notes.append(f"answer cell {step.grade_id!r} raised {message}"[:400])
    for name in step.names:
        try:
            namespace[name] = state["session"].ask(("get", ("N", name)), name)
        except NameError:
            namespace.pop(name, None)
        except (SandboxTimeout, SandboxCrashed) as error:
            state["broken"] = str(error)
            return
        except Exception:  # noqa: BLE001 - a value that cannot be read is not defined
            namespace.pop(name, None)


def _run_test(step, namespace, state, open_sandbox) -> TestResult:
    def verdict(status, message="", details=""):
        score = step.points if status == "passed" else 0.0
        return TestResult(step.grade_id, step.points, score, status, message[:500],
                          details[-4000:])

    printed = io.StringIO()
    try:
        if state["broken"]:
            open_sandbox()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            exec(compile(step.source, f"<test {step.grade_id}>", "exec"), namespace)
    except SandboxTimeout as error:
        state["broken"] = str(error)
        return verdict("timeout", str(error))
    except SandboxCrashed as error:
        state["broken"] = str(error)
        return verdict("crashed", str(error))
    except GraderError as error:
        return verdict("error", f"grader error, tell the instructor: {error}")
    except BaseException as error:  # noqa: BLE001 - any failure of a test fails it
        if isinstance(error, wire.ReferenceCrossing):
            return verdict("reference", f"your answer uses the course's reference "
                           f"implementation: {error}")
        kind = getattr(error, "student_type", "")
        lost = state["lost"].get(getattr(error, "name", None)) if isinstance(
            error, NameError) else None
        if lost:
            return verdict(*lost)
        if kind == REFERENCE_ERROR:
            return verdict("reference", f"your answer uses the course's reference "
                           f"implementation: {error}")
        details = printed.getvalue() + (getattr(error, "student_traceback", "") or "".join(
            traceback.format_exception(error)[-4:]))
        text = f"{type(error).__name__}: {error}".strip().rstrip(":")
        if kind:
            text = f"your code raised {text}"
        return verdict("failed", text.splitlines()[0] if text else type(error).__name__, details)
    return verdict("passed", details=printed.getvalue())
