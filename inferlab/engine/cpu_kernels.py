"""The engine's hand-written CPU kernels for the decode step, in C++ (lesson 07).

A decode step on a CPU spends its time in two places: the weight matrix multiplies, which oneDNN
does well (``packed_weights``), and everything around attention, which PyTorch does as dozens of
small operations per layer. Written with tensors, decode attention copies every key and value out
of the paged cache (``PagedKVCache.gather``), multiplies, masks the padding and copies again; RoPE
and the cache write are a dozen more operations, each a pass over memory and a trip through
PyTorch's dispatcher. vLLM's CPU backend replaces them with C++ kernels; so does this module
(``cpu_kernels.cpp``, about 120 lines of kernels):

* ``paged_decode_attention`` - each thread takes whole sequences and reads their keys and values
  straight from the cache blocks, each row once for all the query heads that share it
  (grouped-query attention), with the softmax in between; no copy, no padding, no mask;
* ``rope_and_store`` - RoPE on the new queries and keys and the cache write, in one pass;
* ``add_rms_norm`` - the residual add and the next RMS norm, in one pass (eight operations in
  PyTorch, each a trip through its dispatcher).

They are the CPU twins of ``gpu_kernels`` (Triton) and plug into the engine the same way, as the
``"cpu"`` attention backend (``attention.CpuKernelAttention``; the model runner takes its
``add_rms_norm`` with it), which ``attention_backend="auto"`` picks for bf16/fp16 on a CPU. The
C++ is compiled once per machine with its own compiler (about 40 s; ``torch.utils.cpp_extension``,
which needs a C++ compiler and ninja) into the course cache; where that fails, or with
``INFERLAB_CPU_KERNELS=0``, the engine keeps the tensor code.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
CFLAGS = ["-O3", "-march=native", "-fopenmp"]
DISABLE = "INFERLAB_CPU_KERNELS"           # set to 0 to keep the tensor code
STALE_LOCK_S = 300                         # a build takes under a minute


def _machine_tag() -> str:
    """What a ``-march=native`` build depends on: the CPU's feature flags (a cache shared by two
    kinds of CPU keeps one build each)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_dir() -> Path:
    """Where the compiled kernels live: the course cache, one folder per source, torch and CPU."""
    from inferlab.lab.settings import cache_dir

    key = hashlib.sha256("\n".join([SOURCE.read_text(), torch.__version__, " ".join(CFLAGS),
                                    _machine_tag()]).encode()).hexdigest()[:12]
    return cache_dir() / "kernels" / f"cpu-{key}"


@functools.lru_cache(maxsize=1)
def _load():
    """The compiled module, or the reason there is none (a string)."""
    if os.environ.get(DISABLE, "1") == "0":
        return f"{DISABLE}=0 is set"
    try:
        from torch.utils.cpp_extension import load

        folder = build_dir()
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / "lock"        # left behind by a build that was interrupted: torch would
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:   # wait forever
            lock.unlink(missing_ok=True)
        name = f"inferlab_cpu_kernels_{folder.name.split('-')[1]}"
        if not any(folder.glob(f"{name}*.so")):
            print("building the engine's CPU kernels with this machine's C++ compiler "
                  "(once; about 40 s)", file=sys.stderr, flush=True)
        return load(name, [str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"],
                    build_directory=str(folder), verbose=False)
    except Exception as err:  # no compiler, no ninja, a failed build: keep the tensor code
        lines = str(err).strip().splitlines() or [""]
        first_error = next((line for line in lines if "error" in line.lower()), lines[-1])
        return f"{type(err).__name__}: {first_error.strip()}"


def available(device="cpu") -> bool:
    """True on a CPU where the kernels are built (building them the first time)."""
    return torch.device(device).type == "cpu" and not isinstance(_load(), str)


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used here, or None."""
    module = _load()
    return module if isinstance(module, str) else None


def paged_decode_attention(q, k_blocks, v_blocks, block_tables, context_lens,
                           scale: float) -> torch.Tensor:
    """``softmax(q K^T * scale) V`` of one query per sequence over its first ``context_lens[b]``
    cached keys. ``q [B, heads, d]``, caches ``[blocks, block_size, kv_heads, d]``,
    ``block_tables [B, width]`` -> ``[B, heads, d]`` (what ``attention.paged_decode_attention``
    computes with tensors)."""
    return _load().paged_decode_attention(q.contiguous(), k_blocks, v_blocks, block_tables,
                                          context_lens, scale)


def rope_and_store(qkv, cos, sin, positions, slot_mapping, k_cache, v_cache, heads: int,
                   kv_heads: int) -> torch.Tensor:
    """Rotate queries and keys of ``qkv [tokens, (heads + 2 kv_heads) d]`` by ``positions``, store
    keys and values at ``slot_mapping`` of the layer's cache ``[slots, kv_heads, d]``; return the
    queries ``[tokens, heads, d]`` (``gpu_kernels.rope_and_store``'s contract)."""
    return _load().rope_and_store(qkv, cos, sin, positions, slot_mapping, k_cache, v_cache,
                                  heads, kv_heads)


def add_rms_norm(h, delta, weight, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``h + delta`` and its RMS norm times ``weight`` (``weights.rms_norm``'s roundings)."""
    h_out, x = _load().add_rms_norm(h, delta, weight, eps)
    return h_out, x
