"""``python -m autograder [--root DIR] COMMAND ...``: the course's one command line.

Lessons (authoring and release)
  release [LESSON...]         lessons/ -> solutions/ -> course/ for every lesson or those named
  release --check [LESSON...] report what is out of date, write nothing
  build [LESSON...]           lessons/ -> solutions/ only (quick, no nbgrader); or a draft:
                              build SCRIPT.py --out NOTEBOOK.ipynb
  check [LESSON|NOTEBOOK...]  the authoring rules, and whether the notebooks are up to date
Grading
  demo                        release, submit the solutions as a demo student, autograde, print
                              the score table, write feedback, then certify and verify the student
  grade STUDENT [LESSON...]   autograde STUDENT's submissions (student code in a sandbox, tests
                              outside it) and print the score table
  grade --all [--workers N | --ray ADDRESS]   every student, in parallel
  scores STUDENT              print STUDENT's score table from the gradebook
Completion and certificates
  progress [STUDENT]          what is done and what is missing for the certificate
  certify [--student S]...    certificates for everyone who meets the completion rule
  verify CREDENTIAL           check a credential.json (or a verification link)
  revoke CREDENTIAL_ID        set the credential's bit in the issuer's status list
  keys init|rotate|show|publish   the did:web issuer: its keys, DID document and trust entry
Course service (self-paced students)
  serve                       start the web service: sign-up, submissions graded in the sandbox,
                              certificates issued and verifiable (127.0.0.1:8000 by default)

A LESSON is its folder name (03_pruning) or number (03). The course folder is --root DIR, else
$INFERLAB_COURSE_ROOT, else the current folder when it holds lessons/ or solutions/, else this
repository. `python -m autograder COMMAND --help` describes each command.

Exit codes:
  0  done; for verify / progress STUDENT / check / release --check: valid, complete, in order
  1  a negative verdict: invalid or revoked credential, progress not complete, a lesson out of
     date or breaking the authoring rules, the demo student not certified
  2  usage or input error (unknown command, lesson or student; missing file or folder; bad key):
     one `error:` line on stderr, never a traceback
  3  verify: a valid credential of the throwaway DEMO issuer (never a real certificate)
  4  verify: valid only by an issuer you supplied with --trust (UNOFFICIAL)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .course import CourseError, course_root, require_course, script_path, select, source_path

EXIT_OK, EXIT_NEGATIVE, EXIT_ERROR = 0, 1, 2
DEMO_STUDENT = "demo-student"
PROG = "python -m autograder"


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as one ``error:`` line (exit 2)."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"error: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------------------- lessons
def cmd_release(args) -> int:
    from .release import release, sync_problems

    root = require_course(args.root)
    lessons = select(root, args.lessons)
    if args.check:
        problems = [p for lesson in lessons for p in sync_problems(root, lesson)]
        for problem in problems:
            print(problem)
        stale = len({p.split(":", 1)[0] for p in problems})
        print(f"{stale} of {len(lessons)} lessons out of date" if stale
              else f"all {len(lessons)} lessons are up to date")
        return EXIT_NEGATIVE if problems else EXIT_OK
    start = time.perf_counter()
    written = release(root, lessons, log=lambda line: print(line, flush=True))
    print(f"{len(written)} lessons released in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def cmd_build(args) -> int:
    import nbformat

    from .authoring import parse_script, problems
    from .release import build_source, notebook_text

    scripts = [t for t in args.targets if t.endswith(".py")]
    if scripts:  # a draft outside the course: SCRIPT.py --out NOTEBOOK.ipynb
        if len(args.targets) != 1 or args.out is None:
            raise CourseError("build SCRIPT.py needs exactly one script and --out NOTEBOOK.ipynb")
        script = Path(scripts[0])
        if not script.is_file():
            raise CourseError(f"no such file: {script}")
        nb = parse_script(script.read_text(encoding="utf-8"), script.stem)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(notebook_text(nb), encoding="utf-8")
        print(f"wrote {args.out} ({len(nb.cells)} cells)")
        for issue in problems(nb):
            print(f"  warning: {issue}")
        return EXIT_OK
    if args.out is not None:
        raise CourseError("--out goes with a script: build SCRIPT.py --out NOTEBOOK.ipynb")
    root = require_course(args.root)
    lessons = select(root, args.targets) if args.targets else [
        lesson for lesson in select(root, []) if script_path(root, lesson).is_file()]
    for lesson in lessons:
        if not script_path(root, lesson).is_file():
            raise CourseError(f"{lesson} has no script {script_path(root, lesson)}")
        changed = build_source(root, lesson)
        state = "built" if changed else "unchanged"
        print(f"{state:<9} {source_path(root, lesson).relative_to(root)}")
        for issue in problems(nbformat.read(source_path(root, lesson), as_version=4), lesson):
            print(f"  warning: {lesson}: {issue}")
    print(f"next: `{PROG} release` makes the student notebooks in course/")
    return EXIT_OK


def cmd_check(args) -> int:
    import nbformat

    from .authoring import parse_script, problems
    from .release import sync_problems

    notebooks = [Path(t) for t in args.targets if t.endswith(".ipynb")]
    names = [t for t in args.targets if not t.endswith(".ipynb")]
    found: list[str] = []
    for path in notebooks:
        if not path.is_file():
            raise CourseError(f"no such file: {path}")
        found += [f"{path}: {issue}" for issue in problems(nbformat.read(path, as_version=4))]
    if names or not notebooks:
        root = require_course(args.root)
        for lesson in select(root, names):
            script = script_path(root, lesson)
            nb = (parse_script(script.read_text(encoding="utf-8"), lesson) if script.is_file()
                  else nbformat.read(source_path(root, lesson), as_version=4))
            found += [f"{lesson}: {issue}" for issue in problems(nb, lesson)]
            found += sync_problems(root, lesson)
    for problem in found:
        print(problem)
    print(f"{len(found)} problem(s)" if found else "no problems")
    return EXIT_NEGATIVE if found else EXIT_OK


# ------------------------------------------------------------------------------- grading
def _grade(root: Path, student: str, lessons: list[str]) -> None:
    """Grade one student's submissions in the sandbox and record them (autograder.grading)."""
    from .grading.grader import grade_one, record
    from .grading.sandbox import check_available

    check_available()
    submitted = root / "submitted" / student
    results = []
    for lesson in lessons:
        if not (submitted / lesson).is_dir():
            print(f"  {lesson:<28} no submission", flush=True)
            continue
        result = grade_one(root, student, lesson)
        results.append(result)
        print(f"  {lesson:<28} graded in {result.seconds:5.1f} s  "
              f"{result.score:g} / {result.max_score:g}", flush=True)
        for line in _reasons(result):
            print(f"      {line}", flush=True)
    record(root, student, results)


def _reasons(result) -> list[str]:
    """Why points were lost, and what the student should know about the file."""
    lines = [f"error: {result.error}"] if result.error else []
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"{t.grade_id}: {t.status}: {t.message}" for t in result.tests
              if t.status != "passed" and not result.error]
    return lines


def _known_student(root: Path, student: str) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    gradebook = root / "gradebook.db"
    if not gradebook.is_file():
        raise CourseError(f"no gradebook at {gradebook}: nothing has been autograded yet")
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        try:
            gb.find_student(student)
        except MissingEntry:
            raise CourseError(f"student {student!r} is not in the gradebook "
                              f"({len(gb.students)} students are)") from None


def cmd_grade(args) -> int:
    from . import pipeline

    root = require_course(args.root)
    graded = pipeline.assignments(root)
    if args.all:
        return _grade_class(root, args, graded)
    if not args.student:
        raise CourseError("name a STUDENT, or grade everyone with --all")
    lessons = [lesson for lesson in select(root, args.lessons) if lesson in graded]
    submitted = root / "submitted" / args.student
    if not submitted.is_dir():
        raise CourseError(f"no submissions from {args.student!r}: {submitted} does not exist "
                          "(nbgrader collect, or copying the notebooks there, puts them there)")
    _grade(root, args.student, lessons)
    print(pipeline.format_table(pipeline.scores(args.student, root)))
    return EXIT_OK


def _grade_class(root: Path, args, graded: list[str]) -> int:
    from .grading.grader import grade_class, students_of

    named = ([args.student] if args.student else []) + list(args.lessons)  # all are lessons here
    lessons = [lesson for lesson in select(root, named) if lesson in graded]
    students = students_of(root)
    where = f"Ray at {args.ray}" if args.ray else f"{args.workers} local worker(s)"
    print(f"grading {len(students)} students on {where}", flush=True)
    start = time.perf_counter()
    grade_class(root, students, lessons, workers=args.workers, ray_address=args.ray,
                log=lambda line: print(line, flush=True))
    print(f"{len(students)} students graded in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


def cmd_scores(args) -> int:
    from . import pipeline

    root = require_course(args.root)
    _known_student(root, args.student)
    print(pipeline.format_table(pipeline.scores(args.student, root)))
    return EXIT_OK


def cmd_demo(args) -> int:
    from . import pipeline
    from .release import release

    root = require_course(args.root)
    print("== 1/5 release: lessons/ -> solutions/ -> course/", flush=True)
    start = time.perf_counter()
    release(root)
    lessons = pipeline.assignments(root)
    print(f"   {len(lessons)} notebooks released in {time.perf_counter() - start:.1f} s")
    print(f"== 2/5 submission: '{DEMO_STUDENT}' submits the released notebooks, solved", flush=True)
    pipeline.nbgrader("db", "student", "add", DEMO_STUDENT, "--first-name", "Demo",
                      "--last-name", "Student", root=root)
    for lesson in lessons:
        pipeline.submit(DEMO_STUDENT, lesson, pipeline.solved_release(lesson, root), root)
    print("== 3/5 autograde (in the sandbox, into gradebook.db)", flush=True)
    _grade(root, DEMO_STUDENT, lessons)
    print("== 4/5 scores", flush=True)
    print(pipeline.format_table(pipeline.scores(DEMO_STUDENT, root)))
    for lesson in lessons:
        pipeline.feedback(DEMO_STUDENT, lesson, root)
    print(f"   feedback written to feedback/{DEMO_STUDENT}/", flush=True)
    print("== 5/5 certificate", flush=True)
    from .certificates.cli import demo_certify

    return demo_certify(root, DEMO_STUDENT, root / "build" / "certificates")


# ------------------------------------------------------------------ completion, certificates
def _certificates(name: str):
    def run(args) -> int:
        from .certificates import cli

        return cli.COMMANDS[name](args)
    return run


# -------------------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=PROG,
                  description="The course's command line: lessons, grading, certificates.",
                  epilog=__doc__[__doc__.index("A LESSON"):],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--root", type=Path, default=None, metavar="DIR",
                     help="the course folder (lessons/, solutions/, course/, gradebook.db)")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # --root also works after the command; --course-root is its older spelling.
    here = _Parser(add_help=False)
    here.add_argument("--root", "--course-root", dest="root", type=Path, metavar="DIR",
                      default=argparse.SUPPRESS, help="the course folder (as before the command)")

    def command(name, handler, help, course=True):
        p = sub.add_parser(name, help=help, description=help, parents=[here] if course else [])
        p.set_defaults(handler=handler)
        return p

    every = "only these (default: every lesson)"
    p = command("release", cmd_release, "build lessons/ -> solutions/ -> course/ (nbgrader)")
    p.add_argument("lessons", nargs="*", metavar="LESSON", help=every)
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a committed notebook is not what release makes")
    p = command("build", cmd_build, "build the source notebooks in solutions/ from the scripts")
    p.add_argument("targets", nargs="*", metavar="LESSON|SCRIPT.py")
    p.add_argument("--out", type=Path, metavar="NOTEBOOK", help="where to write a draft SCRIPT.py")
    p = command("check", cmd_check, "check the authoring rules and that notebooks are up to date")
    p.add_argument("targets", nargs="*", metavar="LESSON|NOTEBOOK.ipynb")

    command("demo", cmd_demo, "release, autograde the solutions as a demo student, certify it")
    p = command("grade", cmd_grade, "autograde a student's submissions (in the sandbox) and print "
                "the score table; or every student with --all")
    p.add_argument("student", nargs="?")
    p.add_argument("lessons", nargs="*", metavar="LESSON", help=every)
    p.add_argument("--all", action="store_true", help="every student under submitted/")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="with --all: local worker processes (default: half the CPU cores)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="with --all: grade on this Ray cluster ('local' starts one here)")
    p = command("scores", cmd_scores, "print a student's score table from the gradebook")
    p.add_argument("student")

    p = command("progress", _certificates("progress"),
                "a student's progress towards the certificate (exit 1 = not complete); "
                "every student, one line each, if none is given")
    p.add_argument("student", nargs="?")
    p = command("certify", _certificates("certify"),
                "issue certificates to students meeting the rule")
    p.add_argument("--student", action="append", help="only this student (repeatable)")
    p.add_argument("--issuer-dir", type=Path, help="issuer key folder (default: "
                   "$INFERLAB_ISSUER_DIR or ~/.config/inferlab/issuer)")
    p.add_argument("--out", type=Path, help="output root (default: <course>/feedback)")
    p = command("verify", _certificates("verify"), "verify a credential.json or verification link "
                "(exit 0 VALID, 1 INVALID or REVOKED, 2 bad input, 3 DEMO, 4 UNOFFICIAL)",
                course=False)
    p.add_argument("credential", help="path, '-' for stdin, or a link containing #vc=")
    p.add_argument("--trust", type=Path, action="append", metavar="FILE",
                   help="also accept the issuers of this trust list (repeatable); a credential "
                   "they vouch for is UNOFFICIAL (exit 4); the published list wins for its DIDs")
    p.add_argument("--demo-list", type=Path, action="append", metavar="FILE",
                   help="demo issuers besides docs/verify/demo-issuers.json (verdict DEMO, exit 3)")
    p.add_argument("--online", action="store_true",
                   help="fetch the issuer's DID document and status list now (https; http only "
                   "for 127.0.0.1/localhost) instead of the trust list's copies")
    p.add_argument("--at", help="verify as of this date-time instead of now (ISO 8601)")
    p = command("revoke", _certificates("revoke"), "revoke a credential by id: set its bit in "
                "the issuer's status list and re-sign the list (no reason is published)")
    p.add_argument("credential_id")
    p.add_argument("--reason", default="", help="a private note kept in the gradebook only")
    p.add_argument("--issuer-dir", type=Path)

    p = command("keys", _certificates("keys"), "the issuer: init, rotate, show, publish",
                course=False)
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True,
                            parser_class=_Parser)
    k = keys.add_parser("init", help="create the did:web issuer (bound to --base-url) and key-1")
    k.add_argument("--base-url", required=True, metavar="URL",
                   help="the course service's address, e.g. https://certs.example.org: the DID "
                   "is did:web:certs.example.org (http only for 127.0.0.1/localhost)")
    k.add_argument("--dir", type=Path, help="issuer folder (default: $INFERLAB_ISSUER_DIR or "
                   "~/.config/inferlab/issuer)")
    k.add_argument("--name", help="the issuer's name (default: inferlab)")
    k.add_argument("--demo", action="store_true", help="label the issuer as a throwaway demo")
    k = keys.add_parser("rotate", help="add a new key and retire the current one")
    k.add_argument("--dir", type=Path)
    k.add_argument("--retire-at", metavar="DATE",
                   help="when the old key stops being valid (ISO 8601; default: now)")
    k = keys.add_parser("show", help="print the issuer and its DID document")
    k.add_argument("--dir", type=Path)
    k = keys.add_parser("publish", help="write the files to host (did.json, status/1, trust.json)"
                        " and the issuer's entry in the trust list")
    k.add_argument("--dir", type=Path)
    k.add_argument("--out", type=Path, metavar="DIR",
                   help="write everything here: DIR/site/ to host, DIR/trusted-issuers.json "
                   "(default: <issuer folder>/site and docs/verify of the repository)")
    p = command("serve", cmd_serve, "start the course service (sign-up, grading, certificates)")
    from .service.cli import add_arguments
    add_arguments(p)
    return top


def cmd_serve(args) -> int:
    from .service.cli import cmd_serve as serve

    return serve(args)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input: reported as one line. The certificate modules' own error
    types count when those modules are loaded (they are imported only by their commands)."""
    errors: list[type[BaseException]] = [CourseError, ValueError, OSError]
    for module, name in (("autograder.certificates.keys", "IssuerKeyError"),
                         ("autograder.certificates.progress", "GradebookError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (0 ok, 1 negative verdict, 2 usage/input error)."""
    top = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = top.parse_args(argv)
    except SystemExit as exc:  # argparse printed the help (0) or one error line (2)
        return EXIT_OK if exc.code in (0, None) else EXIT_ERROR
    if args.command is None:
        top.print_help()
        return EXIT_ERROR
    try:
        args.root = course_root(args.root)
        return args.handler(args)
    except Exception as exc:
        from .pipeline import NbgraderError

        if isinstance(exc, NbgraderError):
            print(f"error: {exc}; its output ends with:\n{exc.log[-3000:]}", file=sys.stderr)
        elif isinstance(exc, _input_errors()):
            print(f"error: {exc}", file=sys.stderr)
        else:  # last resort: still one line, never a traceback
            print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
