"""How long the sandboxed grader (``autograder.grading``) takes: one student, and a whole class.

    python benchmarks/grading_times.py student                  # (a) one student's whole course
    python benchmarks/grading_times.py class --students 20      # (b) 20 students, 1, 2, 4 workers
    python benchmarks/grading_times.py class --students 200 --lessons 00 07 12 --workers 4
    python benchmarks/grading_times.py                          # (a), then (b) with 200 students

The grader under test is ``autograder/`` as committed at HEAD (a copy made with ``git archive``,
so that edits to the checkout during a long run cannot mix two versions of it); ``--live`` uses
the checkout as it is.

Everything runs in a scratch copy of the course (``lessons/``, ``solutions/``, ``course/`` copied
into a temporary folder, which is removed afterwards): the repository's gradebook and submissions
are never touched. Submissions are the released notebooks with every answer filled in from the
solutions (``autograder.pipeline.solved_release``), placed with ``pipeline.submit``.

(a) ``grade_student`` for each lesson in turn, in this process: the wall time per lesson (the
    first grading of a lesson in a process also builds its plan and its redacted package copy),
    the checker's own time (``LessonResult.seconds``), and ``record`` (gradebook + autograded
    notebooks) for the whole course.

(b) a simulated class: students are copies of the solved submissions, and, by student number,
    ``n % 4 == 0`` solved everything, ``1`` hands in one wrong answer per lesson (a mutant from
    ``lessons/NN/mutants.py``), ``2`` leaves one answer as the release's stub, ``3`` both (the
    cell chosen at random, seeded by student and lesson). The class is graded with
    ``grade_class(..., workers=w)`` for each ``w`` (a fresh gradebook each time; the times include
    recording), and every run must give exactly the grades of the first (serial when ``1`` is
    listed; otherwise the first ``--serial-sample`` students are also graded serially and
    compared), students with nothing broken full marks and the others less.

Results are merged into ``benchmarks/results/grading_times.json`` (one entry per kind of run,
each with the machine, its load, the date and versions; the previous few runs of a kind are kept
under "earlier") and ``grading_times.md`` is rewritten from it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --frozen (the default) grades with a copy of autograder/ as committed at HEAD, made by main():
# a long run then cannot mix two versions of the grader while the checkout is being edited.
FROZEN = os.environ.get("GRADING_BENCH_FROZEN")
sys.path.insert(0, str(ROOT))
if FROZEN:
    sys.path.insert(0, FROZEN)

import nbformat  # noqa: E402

from autograder import pipeline  # noqa: E402
from autograder.course import mutants_path, release_path, select, source_path  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
JSON_PATH = RESULTS / "grading_times.json"
MD_PATH = RESULTS / "grading_times.md"
PROFILES = ("solved", "one wrong answer per lesson", "one stub per lesson",
            "one wrong answer and one stub per lesson")


# ------------------------------------------------------------------------------ context
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict:
    import importlib.metadata as md

    def version(package):
        try:
            return md.version(package)
        except md.PackageNotFoundError:
            return None
    bwrap = shutil.which("bwrap")
    bwrap_version = (subprocess.run([bwrap, "--version"], capture_output=True, text=True)
                     .stdout.strip() if bwrap else None)
    if FROZEN:
        commit = os.environ.get("GRADING_BENCH_COMMIT", "?") + " (autograder/ as committed)"
    else:
        commit = git("rev-parse", "--short", "HEAD")
        if git("status", "--porcelain", "--", "autograder"):
            commit += " (autograder/ has uncommitted changes)"
    return {"python": platform.python_version(), "torch": version("torch"),
            "nbgrader": version("nbgrader"), "bubblewrap": bwrap_version, "commit": commit}


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def frozen_run(argv) -> int:
    """Run this script again with HEAD's autograder/ (git archive) first on the path."""
    folder = Path(tempfile.mkdtemp(prefix="inferlab-grader-frozen-"))
    try:
        archive = subprocess.run(["git", "archive", "HEAD", "autograder"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        env = dict(os.environ, GRADING_BENCH_FROZEN=str(folder),
                   GRADING_BENCH_COMMIT=git("rev-parse", "--short", "HEAD"))
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv],
                              env=env).returncode
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def context() -> dict:
    return {"date": datetime.date.today().isoformat(),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                        "kernel": platform.release(),
                        "load_before": [round(x, 2) for x in os.getloadavg()]},
            "versions": versions()}


# ------------------------------------------------------------------------------ a course
class ScratchCourse:
    """A temporary course folder (and temporary folder for the grader's own scratch copies)."""

    def __enter__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="inferlab-grading-bench-"))
        self.root = self.folder / "course-root"
        skip = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
        for part in ("lessons", "solutions", "course"):
            shutil.copytree(ROOT / part, self.root / part, ignore=skip)
        # The grader's redacted package copies and worker runtimes go to $TMPDIR and are kept for
        # the life of the process that made them: keep them here, so they go with the rest.
        scratch = self.folder / "tmp"
        scratch.mkdir()
        self._tmpdir = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(scratch)
        tempfile.tempdir = None
        return self.root

    def __exit__(self, *exc):
        if self._tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = self._tmpdir
        tempfile.tempdir = None
        shutil.rmtree(self.folder, ignore_errors=True)


def fresh_state(root: Path) -> None:
    for name in ("gradebook.db", "autograded"):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def warm_up() -> None:
    """Read Python, torch and the course package from disk once, so the first timed lesson does
    not pay for a cold page cache."""
    subprocess.run([sys.executable, "-c", "import torch, inferlab.engine, nbformat"], check=True)


# ------------------------------------------------------------------------ (a) one student
def one_student(lessons_wanted: list[str]) -> dict:
    from nbgrader.api import Gradebook

    from autograder.grading.grader import grade_student, record
    from autograder.grading.sandbox import check_available

    check_available()
    record_out = context()
    with ScratchCourse() as root:
        lessons = [lesson for lesson in select(root, lessons_wanted)
                   if lesson in pipeline.assignments(root)]
        student = "bench-student"
        for lesson in lessons:
            pipeline.submit(student, lesson, pipeline.solved_release(lesson, root), root)
        warm_up()
        rows, results = [], []
        start = time.perf_counter()
        for lesson in lessons:
            t0 = time.perf_counter()
            result = grade_student(root, student, [lesson])[0]
            wall = time.perf_counter() - t0
            results.append(result)
            rows.append({"lesson": lesson, "wall_s": round(wall, 2),
                         "checker_s": round(result.seconds, 2), "tests": len(result.tests),
                         "score": result.score, "max_score": result.max_score,
                         "not_passed": [f"{t.grade_id}: {t.status}: {t.message}"
                                        for t in result.tests if t.status != "passed"]})
            print(f"  {lesson:<28} {wall:6.2f} s  (checker {result.seconds:5.2f} s)  "
                  f"{result.score:g} / {result.max_score:g}", flush=True)
        grading = time.perf_counter() - start
        # Again, with this process's per-lesson caches (plan, redacted package) warm.
        for row, lesson in zip(rows, lessons):
            t0 = time.perf_counter()
            again = grade_student(root, student, [lesson])[0]
            row["again_s"] = round(time.perf_counter() - t0, 2)
            if [t.score for t in again.tests] != [t.score for t in results[lessons.index(
                    lesson)].tests]:
                raise SystemExit(f"{lesson}: grading it again gave other scores")
        again_total = sum(row["again_s"] for row in rows)
        print(f"  graded again (caches warm) in {again_total:.1f} s", flush=True)
        t0 = time.perf_counter()
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}"):
            pass
        creating = time.perf_counter() - t0
        t0 = time.perf_counter()
        record(root, student, results)
        recording = time.perf_counter() - t0
    total = grading + creating + recording
    print(f"  graded in {grading:.1f} s; gradebook created in {creating:.1f} s, grades recorded "
          f"in {recording:.1f} s: {total:.1f} s", flush=True)
    record_out["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    record_out.update(
        kind="student", lessons=len(lessons), per_lesson=rows,
        grading_s=round(grading, 2), again_s=round(again_total, 2),
        gradebook_create_s=round(creating, 2),
        record_s=round(recording, 2), total_s=round(total, 2),
        score=sum(r.score for r in results), max_score=sum(r.max_score for r in results),
        method="grade_student(root, student, [lesson]) for each lesson in turn, one process "
               "(each lesson's plan and redacted package copy are built on its first grading; "
               "'again' grades every lesson a second time in the same process, caches warm); "
               "then an empty gradebook created (as the first grading of a course does) and "
               "record() once for the whole course; a scratch copy of the course, the "
               "solved release of every lesson submitted")
    return record_out


# ----------------------------------------------------------------------------- (b) a class
def broken_release(root: Path, lesson: str, number: int):
    """The solved release of ``lesson`` as student ``number`` hands it in (see PROFILES)."""
    nb = pipeline.solved_release(lesson, root)
    profile = number % len(PROFILES)
    if profile == 0:
        return nb, []
    released = nbformat.read(release_path(root, lesson), as_version=4)
    stubs = {c.metadata["nbgrader"]["grade_id"]: c.source for c in released.cells
             if c.metadata.get("nbgrader", {}).get("solution")}
    mutants_file = runpy.run_path(str(mutants_path(root, lesson)))
    mutants, mutant_context = mutants_file.get("MUTANTS", {}), mutants_file.get("CONTEXT", "")
    rng = random.Random(f"{number}:{lesson}")
    answers = sorted(stubs)
    rng.shuffle(answers)
    changes = {}
    if profile in (1, 3):
        wrong = next((g for g in answers if mutants.get(g)), None)
        if wrong is not None:
            changes[wrong] = ("wrong", mutant_context + rng.choice(mutants[wrong]).strip("\n"))
    if profile in (2, 3):
        stub = next((g for g in answers if g not in changes), None)
        if stub is not None:
            changes[stub] = ("stub", stubs[stub])
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in changes:
            cell.source = changes[grade_id][1]
    return nb, sorted(f"{kind} {grade_id}" for grade_id, (kind, _) in changes.items())


def grades_of(results) -> dict:
    """student -> lesson -> [(test, score, status)], for comparing runs."""
    return {student: {r.lesson: [(t.grade_id, t.score, t.status) for t in r.tests]
                      for r in lesson_results}
            for student, lesson_results in sorted(results.items())}


def a_class(students_n: int, lessons_wanted: list[str], workers_list: list[int],
            serial_sample: int = 20) -> dict:
    from autograder.grading.grader import grade_class
    from autograder.grading.sandbox import check_available

    check_available()
    record_out = context()
    with ScratchCourse() as root:
        lessons = [lesson for lesson in select(root, lessons_wanted)
                   if lesson in pipeline.assignments(root)]
        students = [f"student-{n:03d}" for n in range(students_n)]
        broken = {}
        t0 = time.perf_counter()
        for number, student in enumerate(students):
            for lesson in lessons:
                nb, changes = broken_release(root, lesson, number)
                pipeline.submit(student, lesson, nb, root)
                broken.setdefault(student, []).extend(f"{lesson} {c}" for c in changes)
        print(f"  {students_n} students x {len(lessons)} lessons submitted in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        warm_up()
        runs, reference, agree = [], None, {}
        for workers in workers_list:
            fresh_state(root)
            print(f"  grading with {workers} worker(s) ...", flush=True)
            t0 = time.perf_counter()
            results = grade_class(root, students, lessons, workers=workers, log=lambda _: None)
            wall = time.perf_counter() - t0
            grades = grades_of(results)
            if reference is None:
                reference, reference_workers = grades, workers
            agree[workers] = grades == reference
            runs.append({"workers": workers, "wall_s": round(wall, 1),
                         "per_student_s": round(wall / students_n, 2),
                         "lesson_gradings_per_minute": round(
                             60 * students_n * len(lessons) / wall, 1),
                         "same_grades_as_first_run": agree[workers]})
            print(f"  {workers} worker(s): {wall:.1f} s ({wall / students_n:.2f} s a student), "
                  f"same grades as the {reference_workers}-worker run: {agree[workers]}",
                  flush=True)
        sample = None
        if 1 not in workers_list and serial_sample > 0:
            # No serial run to compare with: grade a sample of the class serially as well.
            chosen = students[:serial_sample]
            fresh_state(root)
            print(f"  grading the first {len(chosen)} students serially, to compare ...",
                  flush=True)
            t0 = time.perf_counter()
            serial_grades = grades_of(grade_class(root, chosen, lessons, workers=1,
                                                  log=lambda _: None))
            sample = {"students": len(chosen), "wall_s": round(time.perf_counter() - t0, 1),
                      "same_grades": all(serial_grades[s] == reference[s] for s in chosen)}
            print(f"  serial sample: same grades as the {reference_workers}-worker run: "
                  f"{sample['same_grades']}", flush=True)
        totals = {s: sum(score for lesson in reference[s].values() for _, score, _ in lesson)
                  for s in students}
    maximum = max_points(lessons)
    clean = [s for s in students if not broken[s]]
    expected = (all(totals[s] == maximum for s in clean)
                and all(totals[s] < maximum for s in students if broken[s]))
    serial = next((r for r in runs if r["workers"] == 1), None)
    for run in runs:
        if serial is not None:
            run["speed_up_vs_1"] = round(serial["wall_s"] / run["wall_s"], 2)
    distinct = sorted(set(totals.values()))
    print(f"  scores: {len(distinct)} distinct totals, {min(distinct):g}-{max(distinct):g} of "
          f"{maximum:g}; solved students full marks, broken ones less: {expected}", flush=True)
    record_out["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    record_out.update(
        kind="class", students=students_n, lessons=lessons, all_lessons=not lessons_wanted,
        runs=runs,
        reference_workers=workers_list[0],
        all_runs_same_grades=all(agree.values()), serial_sample=sample,
        scores={"max": maximum, "distinct_totals": len(distinct), "lowest": min(distinct),
                "highest": max(distinct), "clean_students": len(clean),
                "clean_full_and_broken_less": expected},
        method="grade_class(root, students, lessons, workers=w) (local process pool, spawn), "
               "a fresh gradebook for each w, timed end to end including record(); students: "
               + "; ".join(f"n % 4 == {i}: {p}" for i, p in enumerate(PROFILES)))
    return record_out


def max_points(lessons: list[str]) -> float:
    total = 0.0
    for lesson in lessons:
        nb = nbformat.read(source_path(ROOT, lesson), as_version=4)
        total += sum(float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade"))
    return total


# ------------------------------------------------------------------------------- results
def key_of(run: dict) -> str:
    if run["kind"] == "student":
        return f"student-{run['lessons']}-lessons"
    return f"class-{run['students']}x{len(run['lessons'])}"


EARLIER_KEPT = 3


def save(run: dict) -> None:
    """The run replaces the last one of its kind; that one joins the few earlier ones kept."""
    data = json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}
    key, runs = key_of(run), data.setdefault("runs", {})
    if key in runs:
        earlier = data.setdefault("earlier", {}).setdefault(key, [])
        earlier.insert(0, runs[key])
        del earlier[EARLIER_KEPT:]
    runs[key] = run
    data["about"] = ("benchmarks/grading_times.py: the sandboxed grader's wall times; "
                     "see the script's docstring for what each run does")
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(data, indent=1) + "\n")
    MD_PATH.write_text(markdown(data))
    print(f"wrote {JSON_PATH.relative_to(ROOT)} and {MD_PATH.relative_to(ROOT)}", flush=True)


def _machine(run: dict) -> str:
    m, v = run["machine"], run["versions"]
    load = f"load average before the run {', '.join(str(x) for x in m['load_before'])}"
    if m.get("load_after"):
        load += (f", after it (its own processes included) "
                 f"{', '.join(str(x) for x in m['load_after'])}")
    return (f"{run['date']}, {m['cpu']}, {m['cores']} cores ({load}; 1, 5, 15 min), Linux "
            f"{m['kernel']}; Python "
            f"{v['python']}, torch {v['torch']}, nbgrader {v['nbgrader']}, {v['bubblewrap']}, "
            f"commit {v['commit']}")


def markdown(data: dict) -> str:
    out = ["# Grading times (the sandboxed grader)", "",
           "Measured by `benchmarks/grading_times.py` in a scratch copy of the course; every "
           "lesson graded in a bubblewrap sandbox (student code) with the tests in the trusted "
           "checker (`docs/grading.md`). Wall-clock seconds.", ""]
    runs = data.get("runs", {})
    for key in sorted(runs, key=lambda k: (runs[k]["kind"] != "student",
                                           runs[k].get("students", 0), k)):
        run = runs[key]
        if run["kind"] == "student":
            out += [f"## One student, the whole course ({run['lessons']} lessons)", "",
                    _machine(run), "",
                    "| lesson | tests | wall s | checker s | again s | score |",
                    "|---|---|---|---|---|---|"]
            for row in run["per_lesson"]:
                out.append(f"| {row['lesson']} | {row['tests']} | {row['wall_s']:.2f} | "
                           f"{row['checker_s']:.2f} | {row.get('again_s', 0):.2f} | "
                           f"{row['score']:g} / {row['max_score']:g} |")
            out += [f"| **grading** | | **{run['grading_s']:.1f}** | | "
                    f"{run.get('again_s', 0):.1f} | "
                    f"{run['score']:g} / {run['max_score']:g} |",
                    f"| create the empty gradebook (once per course) | | "
                    f"{run['gradebook_create_s']:.1f} | | | |",
                    f"| record (grades, autograded notebooks) | | {run['record_s']:.1f} | | | |",
                    f"| **total** (grading, gradebook, record) | | **{run['total_s']:.1f}** "
                    "| | | |",
                    "",
                    "wall s: `grade_student` for the lesson; checker s: the checker's own time "
                    "for it (`LessonResult.seconds`: sandbox start, answers, tests); again s: the "
                    "same lesson graded a second time in the same process.", "",
                    f"Method: {run['method']}.", ""]
            failed = [f for row in run["per_lesson"] for f in row["not_passed"]]
            if failed:
                out += ["Tests not passed: " + "; ".join(failed), ""]
        else:
            lessons = run["lessons"]
            # older results lack "all_lessons"; they were made when the course had 13 lessons
            everything = run.get("all_lessons", len(lessons) >= 13)
            named = f"all {len(lessons)} lessons" if everything else ", ".join(lessons)
            s = run["scores"]
            out += [f"## A class: {run['students']} students x {len(lessons)} lessons", "",
                    _machine(run), "", f"Lessons: {named}.", "",
                    "| workers | wall s | s per student | lesson gradings / min | speed-up "
                    "vs 1 worker | same grades |", "|---|---|---|---|---|---|"]
            for r in run["runs"]:
                speed = f"{r['speed_up_vs_1']:.2f}" if "speed_up_vs_1" in r else "-"
                out.append(f"| {r['workers']} | {r['wall_s']:.1f} | {r['per_student_s']:.2f} | "
                           f"{r['lesson_gradings_per_minute']:.1f} | {speed} | "
                           f"{'yes' if r['same_grades_as_first_run'] else '**NO**'} |")
            if len(run["runs"]) > 1:
                same = "gave" if run["all_runs_same_grades"] else "did NOT give"
                agreement = (f"Grades: every run {same} the grades of the "
                             f"{run['reference_workers']}-worker run. ")
            else:
                agreement = ""
            out += ["", f"{agreement}Totals: "
                    f"{s['distinct_totals']} distinct, {s['lowest']:g} to {s['highest']:g} of "
                    f"{s['max']:g}; the {s['clean_students']} students with nothing broken got "
                    f"full marks and every other student less: "
                    f"{'yes' if s['clean_full_and_broken_less'] else 'NO'}.", ""]
            sample = run.get("serial_sample")
            if sample:
                out += [f"No serial run was timed: the first {sample['students']} students were "
                        f"also graded serially ({sample['wall_s']:.1f} s) and got "
                        f"{'the same' if sample['same_grades'] else '**different**'} grades.",
                        ""]
            out += [f"Method: {run['method']}.", ""]
            out += _oversubscribed(run)
        busy = run["machine"]["load_before"][0]
        if run["machine"]["cores"] and busy > run["machine"]["cores"] / 2:
            out += [f"Other work was running on the machine when this run started (load "
                    f"average {busy:g} on {run['machine']['cores']} cores): the times are "
                    "longer than on a quiet machine.", ""]
        out += _earlier(data.get("earlier", {}).get(key, []))
    return "\n".join(out).rstrip() + "\n"


def _oversubscribed(run: dict) -> list[str]:
    """What the runs with more workers than cores showed."""
    cores, runs = run["machine"]["cores"], run["runs"]
    if not cores or max(r["workers"] for r in runs) <= cores:
        return []
    best = min(runs, key=lambda r: r["wall_s"])
    if len(runs) == 1:
        return [f"This machine has {cores} cores: {best['workers']} workers oversubscribe it.", ""]
    if best["workers"] <= cores:
        return [f"This machine has {cores} cores: {best['workers']} workers were fastest, and "
                "more workers than cores only made the run longer.", ""]
    return [f"This machine has {cores} cores, yet {best['workers']} workers were fastest: "
            "grading is not all CPU work (sandbox start-up, the checker waiting on the sandbox, "
            "the main process recording each student), and on a shared machine more processes "
            "also take a larger share of the CPU from the other work. Time `--workers` on the "
            "grading machine itself before choosing it.", ""]


def _earlier(runs: list[dict]) -> list[str]:
    """One line for each earlier run of the same kind (how much the numbers move)."""
    if not runs:
        return []
    out = ["Earlier runs of the same measurement:", ""]
    for run in runs:
        if run["kind"] == "student":
            numbers = (f"grading {run['grading_s']:.1f} s, total {run['total_s']:.1f} s")
        else:
            numbers = ", ".join(f"{r['workers']} worker(s) {r['wall_s']:.1f} s"
                                for r in run["runs"])
        load, cores = run["machine"]["load_before"][0], run["machine"]["cores"]
        busy = " (other work running)" if cores and load > cores / 2 else ""
        out.append(f"* {run['date']}, load average before {load:g} on {cores} cores{busy}, "
                   f"commit {run['versions']['commit']}: {numbers}")
    return out + [""]


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    # nbgrader's own gradebook code warns about SQLAlchemy sessions while recording: not ours.
    warnings.filterwarnings("ignore", message=".*not in session")
    # nbgrader creates a new gradebook with its migrations tool (alembic), looked up on PATH.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("student", "class", "both"), default="both")
    parser.add_argument("--students", type=int, default=200, help="class size (default 200)")
    parser.add_argument("--lessons", nargs="*", default=[], metavar="LESSON",
                        help="only these lessons (default: all), e.g. 00 05 12")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4],
                        help="worker counts for the class, the first is the reference "
                             "(default: 1 2 4)")
    parser.add_argument("--serial-sample", type=int, default=20, metavar="K",
                        help="when --workers has no 1: grade the first K students serially too "
                             "and compare (default 20)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--live", action="store_true",
                        help="grade with the checkout's autograder/ as it is, uncommitted changes "
                             "included (default: a copy of autograder/ as committed at HEAD)")
    args = parser.parse_args(argv)
    if not args.live and not FROZEN:
        return frozen_run(sys.argv[1:] if argv is None else argv)
    if args.what == "both":
        # Each part in a process of its own: the grader caches per process (plans, redacted
        # copies, the worker's runtime folder), and each part's scratch course goes away with it.
        options = ["--students", str(args.students), "--workers", *map(str, args.workers),
                   "--serial-sample", str(args.serial_sample),
                   *(["--lessons", *args.lessons] if args.lessons else []),
                   *(["--no-save"] if args.no_save else []), *(["--live"] if args.live else [])]
        for what in ("student", "class"):
            code = subprocess.run([sys.executable, str(Path(__file__).resolve()), what,
                                   *options]).returncode
            if code:
                return code
        return 0
    if args.what == "student":
        print("== one student, every lesson", flush=True)
        run = one_student(args.lessons)
    else:
        print(f"== a class of {args.students} students", flush=True)
        run = a_class(args.students, args.lessons, args.workers, args.serial_sample)
    if not args.no_save:
        save(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
