"""``python -m autograder COMMAND``: the course's grading and certificate commands.

  release                 regenerate course/ from solutions/
  demo                    release, submit the solutions as a demo student, autograde, print
                          the score table, write feedback, then certify and verify the student
  grade STUDENT           autograde every submitted notebook of STUDENT and print the table
  scores STUDENT          print STUDENT's score table from the gradebook
  progress | certify | verify | revoke | keys   completion and certificates (see --help of each)
"""
from __future__ import annotations

import sys
import time

from . import pipeline

CERTIFICATE_COMMANDS = ("progress", "certify", "verify", "revoke", "keys")
DEMO_STUDENT = "demo-student"


def _grade(student: str, only: list[str] | None = None) -> None:
    submitted = pipeline.REPO / "submitted" / student
    for assignment in only or pipeline.assignments():
        if not (submitted / assignment).is_dir():
            print(f"  {assignment:<28} no submission", flush=True)
            continue
        start = time.perf_counter()
        result = pipeline.autograde(student, assignment)
        note = "" if result.returncode == 0 else "  (nbgrader reported errors; see the table)"
        print(f"  {assignment:<28} autograded in {time.perf_counter() - start:5.1f} s{note}", flush=True)


def demo() -> int:
    print("== 1/5 release: regenerating course/ from solutions/", flush=True)
    start = time.perf_counter()
    pipeline.release()
    print(f"   {len(pipeline.assignments())} notebooks released in {time.perf_counter() - start:.1f} s")
    print(f"== 2/5 submission: '{DEMO_STUDENT}' submits the released notebooks, solved", flush=True)
    pipeline.nbgrader("db", "student", "add", DEMO_STUDENT, "--first-name", "Demo", "--last-name", "Student")
    for assignment in pipeline.assignments():
        pipeline.submit(DEMO_STUDENT, assignment, pipeline.solved_release(assignment))
    print("== 3/5 autograde (nbgrader, into gradebook.db)", flush=True)
    _grade(DEMO_STUDENT)
    print("== 4/5 scores", flush=True)
    print(pipeline.format_table(pipeline.scores(DEMO_STUDENT)))
    for assignment in pipeline.assignments():
        pipeline.feedback(DEMO_STUDENT, assignment)
    print(f"   feedback written to feedback/{DEMO_STUDENT}/", flush=True)
    print("== 5/5 certificate", flush=True)
    try:
        from .certificates.cli import demo_certify
    except ImportError:
        print("   certificates are not available in this version")
        return 0
    return demo_certify(pipeline.REPO, DEMO_STUDENT, pipeline.REPO / "build" / "certificates")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "release":
        for path in pipeline.release(only=rest or None):
            print(f"released {path.relative_to(pipeline.REPO)}")
        return 0
    if command == "demo":
        return demo()
    if command in ("grade", "scores"):
        if len(rest) != 1:
            print(f"usage: python -m autograder {command} STUDENT", file=sys.stderr)
            return 2
        if command == "grade":
            _grade(rest[0])
        print(pipeline.format_table(pipeline.scores(rest[0])))
        return 0
    if command in CERTIFICATE_COMMANDS:
        from .certificates.cli import main as certificates_main
        return certificates_main(argv)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
