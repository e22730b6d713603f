"""The completion and certificate commands of ``python -m autograder``.

``progress [STUDENT]``, ``certify``, ``verify CREDENTIAL``, ``revoke CREDENTIAL_ID`` and
``keys init|rotate|show|publish``: their options are declared with the rest of the command line in
``autograder.cli`` (one parser, one ``--root``, one set of exit codes); this module holds what
each command does. Every command prints what it did or checked. Exit codes: 0 done / VALID,
1 a negative verdict (INVALID, REVOKED, progress not complete), 2 bad input (a missing file, a
damaged link, an unknown student, a key with loose permissions ...: one ``error:`` line, never a
traceback), 3 DEMO (a valid credential of the throwaway demo issuer), 4 UNOFFICIAL (valid only
by a trust list the user supplied with ``--trust``).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..course import CourseError
from . import didweb, keys, limits, registry, trust
from .issuing import certify_all, certify_student
from .links import LinkError, unpack_text
from .progress import GradebookError, all_progress, format_progress, student_progress
from .publish import publish, write_site
from .rule import DEFAULT_RULE
from .verifier import verify_credential

EXIT_OK, EXIT_INVALID, EXIT_ERROR, EXIT_DEMO, EXIT_UNOFFICIAL = 0, 1, 2, 3, 4
MAX_FILE_BYTES = 10_000_000
DEMO_RUN_BASE_URL = "https://make-demo.inferlab.invalid"


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
        print("note: signing with a DEMO issuer - these certificates are examples only")
    results = certify_all(root, issuer, args.out or root / "feedback", DEFAULT_RULE, args.student)
    for r in results:
        print(r.line())
    issued = sum(r.status == "issued" for r in results)
    print(f"{issued} issued, {sum(r.status == 'already certified' for r in results)} already "
          f"certified, {sum(r.status == 'incomplete' for r in results)} not complete "
          f"(`python -m autograder progress STUDENT` shows why).")
    return EXIT_OK


def _read_credential(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read(MAX_FILE_BYTES)
    if "#vc=" in source:
        try:
            return unpack_text(source.split("#vc=", 1)[1])
        except LinkError as exc:
            raise CliError(str(exc)) from None
    path = Path(source)
    if not path.is_file():
        raise CliError(f"no such file: {source}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CliError(f"{source} is {path.stat().st_size} bytes: not a credential "
                       f"(the limit is {limits.MAX_BYTES})")
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{source} is not a text (JSON) file") from None
    return data


def _lists(paths, default: Path | None) -> tuple[list[dict], list[str]]:
    files = list(paths or []) + ([default] if default is not None and default.exists() else [])
    entries = []
    for f in files:
        entries += trust.load_trust_file(f)
    return entries, [str(f) for f in files]


def cmd_verify(args) -> int:
    data = _read_credential(args.credential)
    page = trust.repository_verify_dir()
    try:
        published, p_src = _lists([], page / trust.TRUST_JSON)
        demo, d_src = _lists(args.demo_list, page / trust.DEMO_JSON)
        extra, e_src = _lists(args.trust, None)
    except trust.TrustError as exc:
        raise CliError(str(exc)) from None
    now = None
    if args.at:
        try:
            now = keys.parse_time(args.at)
        except ValueError as exc:
            raise CliError(f"--at: {exc}") from None
    shown = args.credential if len(args.credential) < 80 else args.credential[:77] + "..."
    print(f"Verifying {shown}")
    print(f"  published issuers: {len(published)} from {', '.join(p_src) or 'nowhere'}")
    print(f"  demo issuers: {len(demo)} from {', '.join(d_src) or 'nowhere'}")
    if extra:
        print(f"  your --trust lists: {len(extra)} issuer(s) from {', '.join(e_src)} "
              "(a match is UNOFFICIAL; published data wins)")
    print("  status: " + ("online (DID document and status list fetched from the issuer)"
                          if args.online else "offline (the trust list's copies)"))
    result = verify_credential(data, published, now=now, demo=demo, extra=extra,
                               fetch=didweb.fetch if args.online else None)
    print(result.report())
    return result.exit_code


def cmd_revoke(args) -> int:
    issuer = keys.load_signing_issuer(args.issuer_dir)
    db = args.root / "gradebook.db"
    issued = registry.by_id(db, args.credential_id) if db.exists() else None
    if issued is None or issued.status_index is None:
        raise CliError(f"{args.credential_id} was not issued from {db} (or has no status index): "
                       "its revocation bit is unknown")
    changed = keys.revoke_index(issuer, issued.status_index)
    if not issued.revoked_at:
        registry.mark_revoked(db, args.credential_id, keys.now_utc(), args.reason)
    site = issuer.directory / "site"
    write_site(issuer, site, keys.signed_status_list(issuer))
    print(("revoked " if changed else "already revoked: ") + f"{args.credential_id} (status bit "
          f"{issued.status_index}); the re-signed list is {site / 'status' / '1'}")
    print("no reason is published; the note stays in the gradebook's record only")
    print(f"publish it: upload {site}/status/1 to {issuer.status_list_url} and run "
          "`python -m autograder keys publish` (refreshes the trust list's copy)")
    return EXIT_OK


def cmd_keys(args) -> int:
    if args.keys_command == "init":
        issuer = keys.init(args.dir, base_url=args.base_url, name=args.name or keys.COURSE_NAME,
                           demo=args.demo)
        print(f"created the issuer {issuer.did} ({issuer.name}) in {issuer.directory}")
        print(f"  private key {keys.key_file(issuer.directory, 'key-1')} (mode 600, folder 700): "
              "keep it secret and backed up; it never goes into git, a notebook or a credential")
        print("next: python -m autograder keys publish   (the files to host, and the trust list)")
        return EXIT_OK
    if args.keys_command == "rotate":
        issuer = keys.rotate(args.dir, args.retire_at)
        old = issuer.keys[-2]
        print(f"new key {issuer.verification_method}; {old['id']} retired at {old['retired']} "
              "(its proofs made before then stay valid)")
        print("next: python -m autograder keys publish, and host the new did.json")
        return EXIT_OK
    if args.keys_command == "show":
        issuer = keys.load_profile(args.dir)
        print(f"issuer {issuer.did}: {issuer.name}, {issuer.base_url}"
              + (" (DEMO)" if issuer.is_demo else ""))
        print(f"DID document, served at {didweb.did_document_url(issuer.did)}:")
        print(json.dumps(issuer.did_document(), indent=2, ensure_ascii=False))
        return EXIT_OK
    issuer = keys.load_signing_issuer(args.dir)
    site = (args.out / "site") if args.out else issuer.directory / "site"
    site_paths, list_paths = publish(issuer, site, args.out or trust.repository_verify_dir())
    print(f"host these files under {issuer.base_url}/ (public data, no private key):")
    for path in site_paths:
        print(f"  {path}  ->  {issuer.base_url}/{path.relative_to(site).as_posix()}")
    print("trust list updated: " + ", ".join(map(str, list_paths)))
    return EXIT_OK


COMMANDS = {"progress": cmd_progress, "certify": cmd_certify, "verify": cmd_verify,
            "revoke": cmd_revoke, "keys": cmd_keys}


# ---------------------------------------------------------------------------------------------
def demo_certify(course_root: Path, student: str, out_dir: Path) -> int:
    """End of ``make demo``: certify ``student`` with a throwaway DEMO issuer and verify it.

    The demo issuer is ``did:web:make-demo.inferlab.invalid`` (``.invalid`` never resolves): its
    key lives in a temporary folder outside the repository and is deleted afterwards, the PDF
    carries a DEMO watermark, and verification gives the verdict DEMO - never VALID. The demo's
    record of issued credentials is kept in that folder too, so the course gradebook's table only
    ever holds real certificates. Outputs go to ``<out_dir>/<student>/certificate/`` and the
    demo issuer's trust entry to ``<out_dir>/demo-issuers.json``. Returns 0 when the verdict is
    DEMO, as expected.
    """
    course_root, out_dir = Path(course_root), Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix="inferlab-demo-issuer-"))
    try:
        print("== certificate (demo)")
        issuer = keys.init(tmp / "issuer", base_url=DEMO_RUN_BASE_URL, demo=True)
        print(f"throwaway DEMO issuer {issuer.did} created in {tmp} (deleted at the end of the "
              "demo)")
        progress = student_progress(course_root, student)
        print(format_progress(progress))
        if not progress.complete:
            print(f"{student} does not meet the completion rule, so no certificate is issued.")
            return EXIT_INVALID
        for attempt in ("first run", "second run (idempotent)"):
            result = certify_student(course_root, student, issuer, out_dir,
                                     db_path=tmp / "demo-credentials.db")
            print(f"certify, {attempt}: {result.line()}")
        cred_path = result.out_dir / "credential.json"
        status = keys.signed_status_list(issuer)
        entry = trust.entry_for(issuer, {issuer.status_list_url: status})
        list_path = trust.write([entry], out_dir, trust.DEMO_JSON, trust.DEMO_JS)[0]
        print(f"wrote {cred_path}, {result.out_dir / 'certificate.pdf'}, "
              f"{result.out_dir / 'links.txt'}")
        print(f"the demo issuer's DID document and status list (no private key): {list_path}")
        print(f"LinkedIn 'add to profile': {result.linkedin[:110]}...")
        print(f"verify {cred_path} (expected verdict: DEMO):")
        verification = verify_credential(cred_path.read_bytes(), [], demo=[entry])
        print(verification.report())
        print("check it again any time (exit 3 = DEMO): "
              f"python -m autograder verify {cred_path} --demo-list {list_path}")
        return EXIT_OK if verification.verdict == "DEMO" else EXIT_INVALID
    except (keys.IssuerKeyError, GradebookError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
