"""Triton kernels on a CPU: run them in Triton's interpreter (lesson 01, section 11).

A Triton kernel (``@triton.jit``) is compiled for a GPU. Triton also ships an **interpreter** that
runs the same kernel body in Python, one program at a time, with NumPy arrays standing in for
the GPU's registers: far too slow for speed, exact enough to check a kernel against plain PyTorch
on any machine. The documented switch is the environment variable ``TRITON_INTERPRET=1``, read
when ``triton`` is imported and when a kernel is decorated. In a notebook that is too late:
``transformers`` imports Triton long before a lesson's exercise cell runs, and flipping the
variable for the whole process would also turn every later kernel of every library into an
interpreted one.

``launch(kernel, grid, *args, **kwargs)`` runs one launch of an ordinary ``@triton.jit`` kernel
on CPU tensors in the interpreter and leaves the process as it found it. For the length of the
launch it

* wraps the kernel's Python function in Triton's ``InterpretedFunction``;
* lets the helpers of ``triton.language`` that are themselves ``@triton.jit`` functions
  (``tl.zeros``, ``tl.sum``, ``x.sum()``, ``tl.cdiv``...) and the kernel's own helpers run
  interpreted too (compiled mode forbids calling them from Python);
* makes ``tl.dot`` of bfloat16 tiles correct (the interpreter keeps bfloat16 as raw 16-bit
  integers, which NumPy's matmul would multiply as integers);
* lets older Triton releases' interpreters take a scalar as a loop bound under NumPy 2.4;
* puts back every function of ``triton.language`` the interpreter swapped, so that kernels
  compile for a GPU afterwards.

Where Triton was imported with ``TRITON_INTERPRET=1`` already (the engine's kernel tests do that
in a child process) the kernel is interpreted as it is. Only CPU tensors: on a GPU, launch the
kernel the normal way (``kernel[grid](...)``).
"""
from __future__ import annotations

import contextlib
import os

try:
    import triton
    import triton.language as tl
    from triton.runtime import interpreter as _interpreter
    from triton.runtime.jit import JITFunction
except ImportError:  # pragma: no cover - installs without Triton (macOS, Windows)
    triton = None

_WRAPPED: dict[int, tuple] = {}


def available() -> bool:
    """True where Triton is installed (its interpreter then runs on any CPU)."""
    return triton is not None


def _interpreted(kernel):
    """The ``InterpretedFunction`` of a ``@triton.jit`` function (made once per function)."""
    if isinstance(kernel, _interpreter.InterpretedFunction):
        return kernel
    if not isinstance(kernel, JITFunction):
        raise TypeError(f"{getattr(kernel, '__name__', kernel)!r} is not a Triton kernel: "
                        "decorate it with @triton.jit")
    cached = _WRAPPED.get(id(kernel))
    if cached is None or cached[0] is not kernel:
        cached = _WRAPPED[id(kernel)] = (kernel, _interpreter.InterpretedFunction(kernel.fn))
    return cached[1]


def _method(jit_function):
    def method(*args, **kwargs):
        return _interpreted(jit_function)(*args, **kwargs)
    return method


@contextlib.contextmanager
def interpreter_mode():
    """Within: ``@triton.jit`` helpers called from an interpreted kernel run interpreted, and
    bfloat16 ``tl.dot`` is computed in float32; on exit everything is restored."""
    if triton is None:
        raise ImportError("Triton is not installed (pip install triton; Linux only)")
    saved_call = JITFunction.__call__
    saved_dot = _interpreter.InterpreterBuilder.create_dot
    saved_env = os.environ.get("TRITON_INTERPRET")
    members = {name: value for name, value in vars(tl.core.tensor).items()
               if isinstance(value, JITFunction)}          # x.sum(), x.to()... helpers
    # The interpreter swaps triton.language's functions for NumPy ones while a kernel runs;
    # some releases leave a few swapped afterwards (tl.program_id...), which breaks compiling
    # any kernel later in the process. Everything is put back as it was on exit.
    language = [(module, dict(vars(module))) for module in (tl, tl.core, tl.math,
                                                             tl.core.tensor)]

    def call(self, *args, **kwargs):
        return _interpreted(self)(*args, **kwargs)

    saved_patch = getattr(_interpreter, "_patch_lang_tensor", None)

    def patch_lang_tensor(tensor, *scope):
        """Triton before 3.7 converts a loop bound with ``int(array)``, which NumPy 2.4 refuses
        for the 1-element arrays the interpreter keeps scalars in: squeeze them first."""
        saved_patch(tensor, *scope)
        index = lambda self: int(self.handle.data.squeeze())  # noqa: E731
        if scope:
            scope[0].set_attr(tensor, "__index__", index)
        else:
            tensor.__index__ = index

    def create_dot(self, a, b, d, *args, **kwargs):
        if a.dtype.scalar == tl.bfloat16:
            a = self.create_fp_ext(a, tl.float32)
        if b.dtype.scalar == tl.bfloat16:
            b = self.create_fp_ext(b, tl.float32)
        return saved_dot(self, a, b, d, *args, **kwargs)

    JITFunction.__call__ = call
    if saved_patch is not None:
        _interpreter._patch_lang_tensor = patch_lang_tensor
    _interpreter.InterpreterBuilder.create_dot = create_dot
    for name, value in members.items():
        setattr(tl.core.tensor, name, _method(value))
    os.environ["TRITON_INTERPRET"] = "1"     # what Triton's helpers check while they run
    try:
        yield
    finally:
        JITFunction.__call__ = saved_call
        if saved_patch is not None:
            _interpreter._patch_lang_tensor = saved_patch
        _interpreter.InterpreterBuilder.create_dot = saved_dot
        for module, saved in language:
            for name in set(vars(module)) - set(saved):
                delattr(module, name)
            for name, value in saved.items():
                if vars(module).get(name) is not value:
                    setattr(module, name, value)
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env


def launch(kernel, grid, *args, **kwargs):
    """``kernel[grid](*args, **kwargs)`` on CPU tensors, in Triton's interpreter."""
    with interpreter_mode():
        return _interpreted(kernel)[grid](*args, **kwargs)
