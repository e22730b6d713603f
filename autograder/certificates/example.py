"""Regenerate the repository's example certificate with a throwaway DEMO issuer.

    python -m autograder.certificates.example

writes ``docs/demo-credential.json`` (a credential for a demo student, signed by the same code
path as ``certify``, with its revocation status entry), ``docs/verify/demo-issuers.json`` and
``.js`` (the demo issuer's DID document and signed status list: the page and ``verify`` show the
example as DEMO, never VALID), ``docs/verify/trusted-issuers.json`` and ``.js`` (kept: only real
issuers, none by default) and ``docs/certificate-example.png`` (its PDF page rendered by
``pdftoppm`` from poppler-utils, when installed). The demo issuer is
``did:web:demo.inferlab.invalid``: ``.invalid`` never resolves, so nobody can host it. Its
private key lives in a temporary folder and is deleted before this command returns: nobody,
including whoever ran it, can sign another credential with it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..course import REPOSITORY
from . import keys, links, proof, status_list, trust
from .credential import build_credential
from .pdf import write_certificate_pdf
from .rule import DEFAULT_RULE

REPO = REPOSITORY
STUDENT = "Demo Student"


def make_demo(directory: Path, base_url: str = keys.DEMO_BASE_URL, student: str = STUDENT,
              name: str = keys.COURSE_NAME) -> tuple[keys.Issuer, dict, dict]:
    """A demo issuer in ``directory``, one signed credential for ``student`` and the issuer's
    trust-list entry: (issuer, credential, entry)."""
    issuer = keys.init(directory, base_url=base_url, name=name, demo=True)
    issued = keys.now_utc()
    criteria = DEFAULT_RULE.narrative([DEFAULT_RULE.knowledge_check])
    status = status_list.status_entry(issuer.status_list_url, keys.allocate_status_index(issuer))
    unsigned = build_credential(student, issuer.issuer_profile, issued, criteria, status=status)
    signed = proof.sign(unsigned, issuer.private_key, issuer.verification_method, issued)
    lists = {issuer.status_list_url: keys.signed_status_list(issuer, issued)}
    return issuer, signed, trust.entry_for(issuer, lists, issued)


def main() -> int:
    docs = REPO / "docs"
    verify_dir = docs / "verify"
    tmp = Path(tempfile.mkdtemp(prefix="inferlab-example-"))
    try:
        issuer, signed, entry = make_demo(tmp / "issuer")
        (docs / "demo-credential.json").write_text(
            json.dumps(signed, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        trust.write([entry], verify_dir, trust.DEMO_JSON, trust.DEMO_JS)
        try:  # keep the real issuers; an unreadable or old-format list becomes an empty one
            real = trust.load_trust_file(verify_dir / trust.TRUST_JSON)
        except trust.TrustError:
            real = []
        trust.write([e for e in real if e["did"] != issuer.did], verify_dir)
        short = links.short_url(issuer.base_url, links.short_id())
        pdf = write_certificate_pdf(tmp / "certificate.pdf", signed, short, demo=True)
        if shutil.which("pdftoppm"):
            subprocess.run(["pdftoppm", "-png", "-r", "90", "-singlefile", str(pdf),
                            str(docs / "certificate-example")], check=True)
            print(f"wrote {docs / 'certificate-example.png'}")
        else:
            print("pdftoppm not found (apt-get install poppler-utils): PNG not refreshed")
        print(f"wrote {docs / 'demo-credential.json'}, {verify_dir / trust.DEMO_JSON} (demo issuer "
              f"{issuer.did}; its private key is deleted now) and {verify_dir / trust.TRUST_JSON}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
