"""The engine's Triton kernels, run on this CPU in Triton's interpreter (triton_interpreted.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
HERE = Path(__file__).resolve().parent


@pytest.mark.slow  # the Triton interpreter runs every kernel program in Python: minutes on a CPU
def test_triton_kernels_match_pytorch_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-o", "addopts=", str(HERE / "triton_interpreted.py")],
                         cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]
