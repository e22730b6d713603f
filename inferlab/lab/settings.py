"""Run-time settings every notebook shares: fast mode, grading mode, cache place, threads.

Introduced in lesson 00. All settings come from environment variables so that the same
notebook runs unchanged for a student, under the test-suite and under nbgrader:

* ``INFERLAB_FAST=1``   - fast mode: every cell still runs, with fewer tokens and repeats.
  The test-suite and continuous integration set it.
* ``NBGRADER_EXECUTION`` - set by nbgrader while it validates or autogrades. Cells that only
  make sense on a GPU or take long are skipped then, and say so. Grading implies fast mode.
* ``INFERLAB_CACHE``    - where converted models live (default ``~/.cache/inferlab``).
* ``INFERLAB_THREADS``  - how many CPU threads PyTorch may use (default: see ``pin_threads``).
* ``INFERLAB_DEVICE``   - ``auto`` (default: the GPU when PyTorch sees one, else the CPU),
  ``cpu`` or ``cuda``: where the lessons run their models.
* ``INFERLAB_MODEL``    - the model the lessons load (default: the embedded SmolLM2-135M-Instruct,
  offline); a hub id or a local folder for a larger one (see ``inferlab.lab.models``).
"""
from __future__ import annotations

import os
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def grading() -> bool:
    """True while nbgrader executes the notebook (validate or autograde)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def fast_mode() -> bool:
    """True when notebooks should use small workloads (tests, CI, grading)."""
    return _flag("INFERLAB_FAST") or grading()


def cache_dir() -> Path:
    """Folder for converted models and other derived artefacts (never inside the repository)."""
    env = os.environ.get("INFERLAB_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "inferlab"
    return base


def pick(full, fast):
    """Return ``fast`` in fast mode, else ``full``: ``n_tokens = pick(128, 16)``."""
    return fast if fast_mode() else full


def threads() -> int:
    """CPU threads PyTorch should use: ``INFERLAB_THREADS`` if set, else the cores this process
    may run on (at most 8). ``inferlab.lab.bench.pin_threads`` applies it."""
    env = os.environ.get("INFERLAB_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError("INFERLAB_THREADS must be a whole number of threads, "
                             f"got {env!r}") from None
        if value < 1:
            raise ValueError(f"INFERLAB_THREADS must be >= 1, got {value}")
        return value
    return min(len(os.sched_getaffinity(0)), 8)


DEVICES = ("auto", "cpu", "cuda")


def device() -> str:
    """Where lessons run: ``"cuda"`` when a GPU is present (or ``INFERLAB_DEVICE=cuda``), else
    ``"cpu"``. ``INFERLAB_DEVICE=cpu`` keeps a GPU machine on the CPU path, e.g. to compare."""
    import torch
    choice = os.environ.get("INFERLAB_DEVICE", "auto").strip().lower() or "auto"
    if choice not in DEVICES:
        raise ValueError(f"INFERLAB_DEVICE must be one of {', '.join(DEVICES)}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("INFERLAB_DEVICE=cuda, but PyTorch sees no GPU here: install a CUDA "
                           "build of torch (on Colab: Runtime > Change runtime type > GPU) or "
                           "unset INFERLAB_DEVICE to run on the CPU")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def model_name() -> str:
    """The lessons' model: ``INFERLAB_MODEL`` if set, else the embedded default."""
    from inferlab.lab.models import DEFAULT_MODEL
    return os.environ.get("INFERLAB_MODEL", "").strip() or DEFAULT_MODEL
