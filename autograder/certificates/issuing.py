"""``certify``: issue the certificate to every student who meets the completion rule.

For each student: read their progress (``progress.py``); skip them if they are not complete (and
say why) or already have a credential (``registry.py``: re-running is idempotent); otherwise
give it a random revocation index in the issuer's status list (``keys.allocate_status_index``)
and a random short id, build the Open Badges credential (``credential.py``), sign it
(``proof.py``), record it, and write three files into ``<out>/<student>/certificate/``:

* ``credential.json`` - the signed credential: the thing that verifies;
* ``certificate.pdf`` - the printable page; its QR code is the short URL ``<base>/c/<short_id>``;
* ``links.txt``       - the short URL, LinkedIn's "add to profile" link (carrying the short
  URL) and the long self-verifying ``#vc=`` link for offline use.

A student who already has a credential gets missing files re-written from the *stored*
credential (no new signature, same id), so outputs can be regenerated safely.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import proof, registry, status_list
from .credential import build_credential
from .keys import VERIFY_URL, Issuer, allocate_status_index, now_utc
from .links import linkedin_url, short_id, short_url, verification_url
from .pdf import write_certificate_pdf
from .progress import Progress, student_progress
from .rule import DEFAULT_RULE, CompletionRule


@dataclass
class IssueResult:
    student: str
    status: str                 # "issued" | "already certified" | "incomplete" | "revoked"
    progress: Progress | None = None
    credential: dict | None = None
    out_dir: Path | None = None
    linkedin: str | None = None

    def line(self) -> str:
        if self.status == "incomplete":
            missing = ", ".join(s.name for s in self.progress.missing)
            return f"{self.student}: not certified - still missing {missing}"
        where = f" -> {self.out_dir}" if self.out_dir else ""
        return f"{self.student}: {self.status} {self.credential['id']}{where}"


def write_outputs(out_dir: Path, credential: dict, cert_url: str, demo: bool,
                  overwrite: bool = False, verify_page: str = VERIFY_URL) -> tuple[Path, str]:
    """Write credential.json, certificate.pdf and links.txt (all of them for a new credential,
    only the missing ones when ``overwrite`` is False). ``cert_url`` is the short public URL."""
    out_dir.mkdir(parents=True, exist_ok=True)
    linkedin = linkedin_url(credential, cert_url)
    path = out_dir / "credential.json"
    if overwrite or not path.exists():
        path.write_text(json.dumps(credential, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    if overwrite or not (out_dir / "certificate.pdf").exists():
        write_certificate_pdf(out_dir / "certificate.pdf", credential, cert_url, demo=demo)
    if overwrite or not (out_dir / "links.txt").exists():
        (out_dir / "links.txt").write_text(
            f"The certificate's public page (the PDF's QR code):\n{cert_url}\n\n"
            f"Add it to your LinkedIn profile (Licenses & certifications):\n{linkedin}\n\n"
            "Self-verifying link for offline use (it carries the whole signed credential):\n"
            f"{verification_url(verify_page, credential)}\n", encoding="utf-8")
    return out_dir, linkedin


def certify_student(course_root: Path, student: str, issuer: Issuer, out_root: Path,
                    rule: CompletionRule = DEFAULT_RULE, db_path: Path | None = None,
                    gradebook=None) -> IssueResult:
    """Certify one student if eligible; see the module docstring."""
    db_path = Path(db_path or Path(course_root) / "gradebook.db")
    out = Path(out_root) / student / "certificate"
    existing = registry.for_student(db_path, student)
    if existing is not None:
        if existing.revoked_at:
            return IssueResult(student, "revoked", credential=existing.credential)
        sid = existing.short_id
        if sid is None:
            sid = short_id()
            registry.set_short_id(db_path, existing.credential_id, sid)
        out, linkedin = write_outputs(out, existing.credential, short_url(issuer.base_url, sid),
                                      issuer.is_demo)
        return IssueResult(student, "already certified", credential=existing.credential,
                           out_dir=out, linkedin=linkedin)
    progress = student_progress(course_root, student, rule, gradebook=gradebook)
    if not progress.complete:
        return IssueResult(student, "incomplete", progress=progress)
    if issuer.private_key is None:
        raise ValueError("certify needs the issuer's private key")
    issued = now_utc()
    criteria = rule.narrative([s.name for s in progress.statuses])
    status = status_list.status_entry(issuer.status_list_url, allocate_status_index(issuer))
    unsigned = build_credential(progress.full_name, issuer.issuer_profile, issued, criteria,
                                status=status)
    signed = proof.sign(unsigned, issuer.private_key, issuer.verification_method, issued)
    sid = short_id()
    registry.record(db_path, student, signed, short_id=sid)
    out, linkedin = write_outputs(out, signed, short_url(issuer.base_url, sid), issuer.is_demo,
                                  overwrite=True)
    return IssueResult(student, "issued", progress=progress, credential=signed, out_dir=out,
                       linkedin=linkedin)


def certify_all(course_root: Path, issuer: Issuer, out_root: Path,
                rule: CompletionRule = DEFAULT_RULE, students: list[str] | None = None,
                db_path: Path | None = None) -> list[IssueResult]:
    """Certify every student of the gradebook (or only ``students``)."""
    from .progress import open_gradebook

    with open_gradebook(course_root) as gb:
        ids = students or sorted(s.id for s in gb.students)
        return [certify_student(course_root, s, issuer, out_root, rule, db_path, gradebook=gb)
                for s in ids]
