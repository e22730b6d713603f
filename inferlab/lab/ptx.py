"""Read what a Triton kernel compiles to, without a GPU (lesson 01, section 11; the W4A16 tests).

Triton compiles a kernel in stages - Triton IR, then GPU IR, LLVM IR, and finally **PTX**, the
assembly language of NVIDIA GPUs - and every stage runs on the CPU: a GPU is needed only to
*run* the result. So the question "does my kernel read memory in wide vectors?" can be answered
on any machine with Triton's NVIDIA backend installed, by compiling for a chosen GPU
architecture (``capability=90``: Hopper, H100/H200; 80: Ampere, A100; 75: Turing, T4) and
counting the global-memory instructions in the PTX:

* ``ld.global.v4.b32`` reads 16 bytes per thread in one instruction (a *vectorized* load);
* ``ld.global.b8`` reads one byte: a kernel that streams weights this way issues 16 times the
  instructions for the same bytes and falls far short of the memory bandwidth;
* ``cp.async`` copies global memory into shared memory in the background (how Triton pipelines
  the tiles that feed ``tl.dot``).

Static counts: an instruction inside the kernel's loop is counted once, however many times it
runs.
"""
from __future__ import annotations

import inspect
import re
from collections import Counter

_POINTER_TYPES = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32", "uint8": "*u8",
                  "int8": "*i8", "int32": "*i32"}


def compile_ptx(kernel, pointers: dict[str, str], constexprs: dict[str, int], *,
                divisible: tuple[str, ...] | None = None, capability: int = 90,
                num_warps: int = 4, num_stages: int = 3) -> str:
    """The PTX of ``kernel`` (a ``@triton.jit`` function) for an NVIDIA GPU of compute
    ``capability``. ``pointers`` gives each pointer argument's element type (``"float16"``,
    ``"uint8"``...), ``constexprs`` each compile-time constant (those with a default may be left
out); every other argument is a 32-bit
    integer, and those named in ``divisible`` (default: all) are multiples of 16 - which Triton
    checks at every launch and compiles for (strides, sizes), so that is what a launch sees."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    names = kernel.arg_names
    unknown = (set(pointers) | set(constexprs) | set(divisible or ())) - set(names)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not arguments of {kernel.__name__}")
    empty = inspect.Parameter.empty
    constexprs = {**{p.name: p.default for p in kernel.params
                     if p.is_constexpr and p.default is not empty}, **constexprs}
    missing = [p.name for p in kernel.params if p.is_constexpr and p.name not in constexprs]
    if missing:
        raise ValueError(f"give a value for every tl.constexpr argument: {missing}")
    integers = [name for name in names if name not in pointers and name not in constexprs]
    signature = {name: ("constexpr" if name in constexprs else
                        _POINTER_TYPES[pointers[name]] if name in pointers else "i32")
                 for name in names}
    attrs = {(names.index(name),): [["tt.divisibility", 16]]
             for name in [*pointers, *(integers if divisible is None else divisible)]}
    source = ASTSource(fn=kernel, signature=signature, attrs=attrs,
                       constexprs={(names.index(name),): value
                                   for name, value in constexprs.items()})
    compiled = triton_compile(source, target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    return compiled.asm["ptx"]


def global_loads(ptx: str) -> Counter:
    """How many global-memory load instructions of each kind the PTX contains
    (``ld.global.v4.b32``, ``ld.global.b8``, ``cp.async.cg.shared.global``...)."""
    return Counter(re.findall(r"\bld\.global(?:\.[\w]+)*|\bcp\.async\.c[ag]\.shared\.global",
                              ptx))
