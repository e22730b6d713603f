"""Lessons 10 and 11 start real servers: every one listens on 127.0.0.1 and none outlives the
notebook.

* statically: the notebooks start servers only through the course's managed entry points, inside
  ``with`` blocks (stopped even when the cell fails), and never name another address;
* dynamically: tests/test_notebooks.py runs every notebook while a watcher samples the listening
  sockets of every process below the test; afterwards no process may be left.
"""
import re

import pytest

from tests import notebooks as nbt

LESSONS = ["10_serving_engines", "11_distributed_serving"]
STARTERS = ("vllm_server(", "llama_cpp_server(", "serve_session(")


def code_of(lesson: str) -> str:
    nb = nbt.read(nbt.solution_path(lesson))
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("lesson", LESSONS)
def test_servers_are_started_only_through_managed_entry_points(lesson):
    code = code_of(lesson)
    assert "0.0.0.0" not in code and "Popen" not in code and "os.system" not in code
    assert not re.search(r"--host\s", code), "pass no host: the launchers bind 127.0.0.1"
    for starter in STARTERS:
        for match in re.finditer(re.escape(starter), code):
            line = code[code.rfind("\n", 0, match.start()) + 1:code.find("\n", match.start())]
            if line.lstrip().startswith(("def ", "from ", "import ", "#")):
                continue
            assert line.lstrip().startswith("with ") or " with " in line, (
                f"{lesson}: start servers in a with-block (stopped even if the cell fails): "
                f"{line.strip()}")

# The dynamic check (loopback only, nothing left behind) runs for every lesson in
# tests/test_notebooks.py::test_solution_runs_top_to_bottom.
