"""Style the project keeps: ruff passes everywhere, and lesson code fits a Colab cell's width."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import notebooks as nbt

REPO = Path(__file__).resolve().parent.parent
LESSON_LINE_LIMIT = 100   # Colab wraps longer code lines, which breaks their indentation visually


def _ruff() -> list[str]:
    local = Path(sys.executable).with_name("ruff")
    if local.is_file():
        return [str(local)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed (make setup installs it)")


def test_ruff_passes_on_package_tests_lessons_and_tools():
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("lesson", nbt.lesson_ids())
def test_lesson_code_lines_fit_a_colab_cell(lesson):
    long = [(index, line) for index, cell in enumerate(nbt.read(nbt.solution_path(lesson)).cells)
            if cell.cell_type == "code" for line in cell.source.splitlines()
            if len(line) > LESSON_LINE_LIMIT]
    assert not long, (f"{lesson}: {len(long)} code line(s) over {LESSON_LINE_LIMIT} "
                      f"characters, e.g. cell {long[0][0]}: {long[0][1]!r}")


# Lesson text speaks to the student about the student's machine, never about how the course was
# made: no issue numbers, no "machines available to this course", no "this offline machine".
ABOUT_THE_BUILD = re.compile(r"\bissue #?\d+|\bcourse's issue|available to this course|"
                             r"this offline machine|machines? this course (?:was|is) built",
                             re.IGNORECASE)


@pytest.mark.parametrize("lesson", nbt.lesson_ids())
def test_lesson_text_speaks_to_the_student(lesson):
    found = [(index, match.group(0))
             for index, cell in enumerate(nbt.read(nbt.solution_path(lesson)).cells)
             for match in ABOUT_THE_BUILD.finditer(cell.source)]
    assert not found, f"{lesson}: text about the course's own build, e.g. cell {found[0][0]}: " \
                      f"{found[0][1]!r} - say what the student's run shows instead"
