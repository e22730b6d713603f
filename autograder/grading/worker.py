"""The process that runs a student's code in the sandbox: `python -m autograder.grading.worker`.

It holds the student's namespace: the lesson's imports and the student's answer cells run here.
The trusted checker sends requests over file descriptors 3 (in) and 4 (out), framed as a 4-byte
length and a message (see :mod:`autograder.grading.wire`); the student's prints go to stdout and
stderr, which the checker reads separately and never interprets.

Requests, each answered by ``("ok", value, arguments after the call)``, ``("stop",)`` when an
iterator is exhausted, or ``("error", type name, message, traceback)``:

    ("exec", code, filename)          run a cell in the namespace (IPython syntax allowed)
    ("get", target)                   a global's value (or a handle to it)
    ("call", target, args, kwargs)    call it; the arguments come back with their new state
    ("getattr", target, name)  ("setattr", target, name, value)
    ("next", target)  ("len", target)  ("getitem", target, key)  ("iter", target)
    ("backward", number, gradient)    backpropagate through a call's tensor result (a call whose
                                      result autograd can differentiate is answered with a
                                      fourth item: (number, references of the inputs))

A target is ("N", name), a global of the namespace, or ("H", number), an object handed out
before. Nothing here is trusted by the checker: the student's code can replace any of it, and
the most it can achieve that way is to answer with plain data of its choosing - which its
functions could have returned anyway.
"""
from __future__ import annotations

import os
import struct
import sys
import traceback


def read_message(fd: int) -> bytes | None:
    header = _read_exactly(fd, 4)
    if header is None:
        return None
    return _read_exactly(fd, struct.unpack(">I", header)[0])


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd: int, data: bytes) -> None:
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


class Worker:
    def __init__(self):
        from autograder.grading import wire

        self.wire = wire
        self.namespace: dict = {"__name__": "__main__"}
        self.handles: dict[int, object] = {}
        self.kept: list = []        # tensors whose storages were sent (their numbers stay unique)
        self.graphs: dict[int, tuple] = {}   # autograd results the checker may call backward on
        self.shell = None

    # A value that is not data stays here; the checker gets its number.
    def handle(self, obj):
        number = len(self.handles) + 1
        self.handles[number] = obj
        return ("H", number, type(obj).__name__)

    def target(self, node):
        if node[0] == "N":
            if node[1] not in self.namespace:
                raise NameError(f"name {node[1]!r} is not defined")
            return self.namespace[node[1]]
        return self.handles[node[1]]

    def decoder(self):
        return self.wire.Decoder(handle=lambda node: self.handles[node[1]])

    def answer(self, value, arguments=(), decoder=None):
        refs = decoder.received if decoder is not None else {}
        encoder = self.wire.Encoder(self.handle, refs=refs, storages=self.kept,
                                    course_functions=False)
        return ("ok", encoder.encode(value), encoder.encode(list(arguments)))

    def run_cell(self, source: str) -> None:
        """Run a cell as Jupyter would (magics such as %time, display(), shell escapes fail
        quietly in the sandbox), in the namespace the checker reads from."""
        if self.shell is None:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config

            config = Config()
            config.HistoryManager.enabled = False
            config.InteractiveShell.colors = "nocolor"
            self.shell = InteractiveShell.instance(config=config, user_ns=self.namespace)
        result = self.shell.run_cell(source, store_history=False)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec

    def graph(self, result, decoder) -> tuple:
        """For a tensor result that autograd can differentiate with respect to tensors the
        checker sent: a number for a later ("backward", number, gradient) request and the
        references of those inputs."""
        torch = sys.modules.get("torch")
        if torch is None or type(result) is not torch.Tensor or result.grad_fn is None:
            return ()
        inputs = [(ref, node) for node in decoder.nodes
                  if type(node) is torch.Tensor and node.requires_grad and node.is_leaf
                  and (ref := decoder.received.get(id(node))) is not None]
        if not inputs:
            return ()
        number = len(self.graphs) + 1
        self.graphs[number] = (result, [node for _, node in inputs])
        return ((number, [ref for ref, _ in inputs]),)

    def serve(self, request):
        kind = request[0]
        if kind == "exec":
            self.run_cell(request[1])
            return ("ok", None, [])
        if kind == "backward":
            result, inputs = self.graphs.pop(request[1])
            result.backward(self.decoder().decode(request[2]))
            return self.answer([t.grad for t in inputs])
        target = self.target(request[1])
        if kind == "get":
            return self.answer(target)
        if kind == "call":
            decoder = self.decoder()
            args = decoder.decode(request[2])
            kwargs = decoder.decode(request[3])
            result = target(*args, **kwargs)
            return self.answer(result, [args, kwargs], decoder) + self.graph(result, decoder)
        if kind == "getattr":
            return self.answer(getattr(target, request[2]))
        if kind == "setattr":
            setattr(target, request[2], self.decoder().decode(request[3]))
            return ("ok", None, [])
        if kind == "iter":
            return self.answer(iter(target))
        if kind == "next":
            try:
                return self.answer(next(target))
            except StopIteration:
                return ("stop",)
        if kind == "len":
            return self.answer(len(target))
        if kind == "getitem":
            return self.answer(target[self.decoder().decode(request[2])])
        raise ValueError(f"unknown request {kind!r}")

    def run(self, fd_in: int = 3, fd_out: int = 4) -> None:
        wire = self.wire
        while True:
            data = read_message(fd_in)
            if data is None:
                return
            try:
                reply = self.serve(wire.loads(data))
            except BaseException as error:  # noqa: BLE001 - even sys.exit() is reported as data
                text = "".join(traceback.format_exception(error)[-12:])
                reply = ("error", type(error).__name__, str(error)[:2000], text[-6000:])
            try:
                payload = wire.dumps(reply)
            except Exception as error:  # noqa: BLE001 - e.g. a value that cannot be pickled
                payload = wire.dumps(("error", "WireError", str(error)[:2000], ""))
            write_message(fd_out, payload)


def prepare() -> None:
    """Before any student code: nothing is cached to disk, and the numerical libraries use the
    CPU threads the sandbox allows."""
    sys.dont_write_bytecode = True
    threads = int(os.environ.get("INFERLAB_THREADS", "1"))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


def main() -> None:
    prepare()
    worker = Worker()
    write_message(4, worker.wire.dumps(("ready",)))   # start-up is not the student's time
    worker.run()


if __name__ == "__main__":
    main()
