"""Regenerate the repository's example certificate with a throwaway DEMO key.

    python -m autograder.certificates.example

writes ``docs/demo-credential.json`` (a credential for a demo student, signed by the same code
path as ``certify``), ``docs/certificate-example.png`` (its PDF page rendered by ``pdftoppm``
from poppler-utils, when installed) and replaces the demo entry of ``docs/verify/trusted-issuers``
so that the published page and ``verify`` accept the example - labelled as a DEMO key. The private
key lives in a temporary folder and is deleted before this command returns: nobody, including
whoever ran it, can sign another credential with it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..course import REPOSITORY
from . import keys, proof, trust
from .credential import build_credential
from .links import verification_url
from .pdf import write_certificate_pdf
from .rule import DEFAULT_RULE

REPO = REPOSITORY
STUDENT = "Demo Student"


def main() -> int:
    docs = REPO / "docs"
    tmp = Path(tempfile.mkdtemp(prefix="inferlab-example-"))
    try:
        issuer = keys.init(tmp / "issuer", demo=True)
        issued = keys.now_utc()
        criteria = DEFAULT_RULE.narrative([DEFAULT_RULE.knowledge_check])
        unsigned = build_credential(STUDENT, issuer.profile, issued, criteria)
        signed = proof.sign(unsigned, issuer.private_key, issuer.verification_method, issued)
        (docs / "demo-credential.json").write_text(
            json.dumps(signed, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        verify_dir = docs / "verify"
        existing = trust.load_trust_file(verify_dir / trust.TRUST_JSON) \
            if (verify_dir / trust.TRUST_JSON).exists() else []
        trust.write([p for p in existing if not p.get("demo")] + [issuer.profile], verify_dir)
        link = verification_url(issuer.profile["verifyUrl"], signed)
        pdf = write_certificate_pdf(tmp / "certificate.pdf", signed, link, demo=True)
        if shutil.which("pdftoppm"):
            subprocess.run(["pdftoppm", "-png", "-r", "90", "-singlefile", str(pdf),
                            str(docs / "certificate-example")], check=True)
            print(f"wrote {docs / 'certificate-example.png'}")
        else:
            print("pdftoppm not found (apt-get install poppler-utils): PNG not refreshed")
        print(f"wrote {docs / 'demo-credential.json'} and {verify_dir / trust.TRUST_JSON} "
              "(demo key "
              f"{issuer.profile['issuer']['id']}; its private key is deleted now)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
