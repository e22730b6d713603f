# nbgrader reads the configuration of the folder it runs in; the course's settings live in
# autograder/nbgrader_config.py. The autograder is instructor tooling used from this repository
# (it is not part of the installed `inferlab` package), so the repository goes on the path first.
import sys
from pathlib import Path

_REPOSITORY = str(Path(__file__).resolve().parent)
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)

from autograder.nbgrader_config import configure  # noqa: E402

configure(get_config())  # noqa: F821 - provided by traitlets when nbgrader loads this file
