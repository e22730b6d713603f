"""The completion and certificate commands of ``python -m autograder``.

``progress [STUDENT]``, ``certify``, ``verify CREDENTIAL``, ``revoke CREDENTIAL_ID`` and
``keys init|show|publish``: their options are declared with the rest of the command line in
``autograder.cli`` (one parser, one ``--root``, one set of exit codes); this module holds what
each command does. Every command prints what it did or checked and returns ``EXIT_OK`` (0),
``EXIT_INVALID`` (1: a negative verdict - an invalid or revoked credential, progress not complete)
or, through the CLI's error handling, ``EXIT_ERROR`` (2: bad input - a missing file, malformed
JSON, an unknown student, a key with loose permissions ... - reported as one ``error:`` line,
never a traceback).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from ..course import CourseError
from . import keys, registry, trust
from .issuing import certify_all, certify_student
from .links import unpack
from .progress import GradebookError, all_progress, format_progress, student_progress
from .rule import DEFAULT_RULE
from .verifier import verify_credential

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2


class CliError(CourseError):
    """Bad input, reported as one ``error:`` line (exit 2)."""


# ---------------------------------------------------------------------------------------------
def cmd_progress(args) -> int:
    root = args.root
    if args.student:
        progress = student_progress(root, args.student)
        print(format_progress(progress))
        return EXIT_OK if progress.complete else EXIT_INVALID
    everyone = all_progress(root)
    for p in everyone:
        done = sum(s.done for s in p.statuses)
        verdict = "complete" if p.complete else "missing " + ", ".join(s.name for s in p.missing)
        print(f"{p.student:<20} {done:>2}/{len(p.statuses)}  {verdict}")
    if not everyone:
        print("no students in the gradebook")
    return EXIT_OK


def cmd_certify(args) -> int:
    root = args.root
    issuer = keys.load_signing_issuer(args.issuer_dir)
    if issuer.is_demo:
        print("note: signing with a DEMO key - these certificates are examples only")
    results = certify_all(root, issuer, args.out or root / "feedback", DEFAULT_RULE, args.student)
    for r in results:
        print(r.line())
    issued = sum(r.status == "issued" for r in results)
    print(f"{issued} issued, {sum(r.status == 'already certified' for r in results)} already "
          f"certified, {sum(r.status == 'incomplete' for r in results)} not complete "
          f"(`python -m autograder progress STUDENT` shows why).")
    return EXIT_OK


def _read_credential(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    if "#vc=" in source:
        try:
            return json.dumps(unpack(source.split("#vc=", 1)[1]))
        except Exception:
            raise CliError("the verification link is damaged "
                           "(its #vc= part does not decode)") from None
    path = Path(source)
    if not path.is_file():
        raise CliError(f"no such file: {source}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{source} is not a text (JSON) file") from None


def _trusted(args) -> tuple[list[dict], list[str]]:
    profiles, sources = [], []
    explicit = bool(args.issuer_dir or args.trust)
    dirs = args.issuer_dir or ([] if explicit else [keys.default_issuer_dir()])
    files = args.trust or ([] if explicit else [trust.repository_verify_dir() / trust.TRUST_JSON])
    for d in dirs:
        path = Path(d) / keys.PROFILE_FILE
        if path.exists() or explicit:
            profiles += trust.load_trust_file(path)
            sources.append(str(path))
    for f in files:
        if Path(f).exists() or explicit:
            profiles += trust.load_trust_file(f)
            sources.append(str(f))
    return profiles, sources


def cmd_verify(args) -> int:
    text = _read_credential(args.credential)
    try:
        trusted, sources = _trusted(args)
    except trust.TrustError as exc:
        raise CliError(str(exc)) from None
    now = None
    if args.at:
        try:
            now = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise CliError(f"--at {args.at!r} is not an ISO 8601 date-time") from None
        if now.tzinfo is None:
            raise CliError("--at needs a time zone, e.g. 2026-01-01T00:00:00Z")
    shown = args.credential if len(args.credential) < 80 else args.credential[:77] + "..."
    print(f"Verifying {shown}")
    print(f"  trusted issuer keys: {len(trusted)} from " + (", ".join(sources) or "nowhere"))
    result = verify_credential(text, trusted, now=now)
    print(result.report())
    return EXIT_OK if result.valid else EXIT_INVALID


def cmd_revoke(args) -> int:
    issuer = keys.load_profile(args.issuer_dir)
    profile = issuer.profile
    if any(e.get("id") == args.credential_id for e in profile.get("revoked", [])):
        print(f"{args.credential_id} is already on the revocation list of {issuer.directory}")
        return EXIT_OK
    when = keys.now_utc()
    profile.setdefault("revoked", []).append(
        {"id": args.credential_id, "revokedAt": when, "reason": args.reason})
    keys.save_profile(issuer.directory, profile)
    db = args.root / "gradebook.db"
    known = db.exists() and registry.mark_revoked(db, args.credential_id, when, args.reason)
    print(f"revoked {args.credential_id} in {issuer.directory / keys.PROFILE_FILE}"
          + (" and in the gradebook's record" if known else " (not issued from this gradebook)"))
    print("publish the updated list so that other verifiers see it: "
          "python -m autograder keys publish")
    return EXIT_OK


def cmd_keys(args) -> int:
    if args.keys_command == "init":
        issuer = keys.init(args.dir, name=args.name or keys.COURSE_NAME,
                           url=args.url or keys.COURSE_URL,
                           verify_url=args.verify_url or keys.VERIFY_URL, demo=args.demo)
        vm = issuer.profile["verificationMethod"]
        print(f"created the issuer key {issuer.directory / keys.KEY_FILE} (mode 600, folder 700)")
        print("  keep it secret and backed up; it never goes into git, a notebook or a credential")
        print(f"public issuer profile: {issuer.directory / keys.PROFILE_FILE}")
        print(f"  issuer id (did:key): {vm['controller']}")
        print("next: python -m autograder keys publish   "
              "(lets the page and the CLI trust this key)")
        return EXIT_OK
    issuer = keys.load_profile(args.dir)
    if args.keys_command == "show":
        print(json.dumps(issuer.profile, indent=2, ensure_ascii=False))
        return EXIT_OK
    paths = trust.publish(issuer.profile, args.to or trust.repository_verify_dir())
    print("published the public issuer profile (no private key) to " + ", ".join(map(str, paths)))
    return EXIT_OK


COMMANDS = {"progress": cmd_progress, "certify": cmd_certify, "verify": cmd_verify,
            "revoke": cmd_revoke, "keys": cmd_keys}


# ---------------------------------------------------------------------------------------------
def demo_certify(course_root: Path, student: str, out_dir: Path) -> int:
    """End of ``make demo``: certify ``student`` with a throwaway DEMO key and verify the result.

    The demo key lives in a temporary folder outside the repository and is deleted afterwards;
    its profile says ``demo: true`` and the PDF carries a DEMO watermark. The demo's record of
    issued credentials is kept in that folder too, so the course gradebook's table only ever holds
    real certificates. Outputs go to ``<out_dir>/<student>/certificate/``.
    """
    course_root, out_dir = Path(course_root), Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix="inferlab-demo-issuer-"))
    try:
        print("== certificate (demo)")
        issuer = keys.init(tmp / "issuer", name=keys.COURSE_NAME, demo=True)
        print(f"throwaway DEMO issuer key created in {tmp} (deleted at the end of the demo)")
        progress = student_progress(course_root, student)
        print(format_progress(progress))
        if not progress.complete:
            print(f"{student} does not meet the completion rule, so no certificate is issued.")
            return EXIT_INVALID
        out_root = out_dir
        for attempt in ("first run", "second run (idempotent)"):
            result = certify_student(course_root, student, issuer, out_root,
                                     db_path=tmp / "demo-credentials.db")
            print(f"certify, {attempt}: {result.line()}")
        cred_path = result.out_dir / "credential.json"
        for old in (out_dir / trust.TRUST_JSON, out_dir / trust.TRUST_JS):
            old.unlink(missing_ok=True)  # the previous demo's throwaway key is gone: forget it
        profile_path = trust.publish(issuer.profile, out_dir)[0]
        print(f"wrote {cred_path}, {result.out_dir / 'certificate.pdf'}, "
              f"{result.out_dir / 'links.txt'}")
        print(f"the demo issuer's public profile (no private key): {profile_path}")
        print(f"LinkedIn 'add to profile': {result.linkedin[:110]}...")
        print(f"verify {cred_path} against the demo issuer's published profile:")
        verification = verify_credential(cred_path.read_text(encoding="utf-8"), [issuer.profile])
        print(verification.report())
        print("check it again any time: "
              f"python -m autograder verify {cred_path} --trust {profile_path}")
        return EXIT_OK if verification.valid else EXIT_INVALID
    except (keys.IssuerKeyError, GradebookError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
