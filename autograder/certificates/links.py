"""The two links a certificate carries: the verification address and LinkedIn's "add to profile".

**Verification address.** The verification page is static (no server, no database), so it cannot
look a credential up by id. Instead the link *carries the credential*: ``<page>#vc=<data>``, where
``<data>`` is the compact JSON, raw-DEFLATE compressed and base64url encoded. The part after ``#``
never leaves the browser (it is not sent to the web server), and the page verifies it offline.
The same link is printed as the QR code on the PDF, so the paper certificate verifies itself.

**LinkedIn.** LinkedIn's documented "Add to profile" URL pre-fills a *Licenses & certifications*
entry: ``https://www.linkedin.com/profile/add?startTask=CERTIFICATION_NAME&name=...
&organizationName=...&issueYear=...&issueMonth=...&certUrl=...&certId=...``.
"""
from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import urlencode

LINKEDIN_ADD = "https://www.linkedin.com/profile/add"


def pack(credential: dict) -> str:
    """Credential -> base64url(raw DEFLATE(compact JSON)), no padding."""
    text = json.dumps(credential, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(text) + c.flush()
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unpack(packed: str) -> dict:
    """Inverse of :func:`pack` (used by tests and by ``verify`` given a link instead of a file)."""
    data = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    return json.loads(zlib.decompress(data, -15).decode("utf-8"))


def verification_url(verify_page: str, credential: dict) -> str:
    """``<page>#vc=<packed credential>``: opening it verifies the credential in the browser."""
    return f"{verify_page.split('#')[0]}#vc={pack(credential)}"


def linkedin_url(credential: dict, cert_url: str) -> str:
    """LinkedIn "add to profile" link for ``credential`` (name, issuer, month, id and URL)."""
    issued = credential["validFrom"]
    params = {
        "startTask": "CERTIFICATION_NAME",
        "name": credential["name"],
        "organizationName": credential["issuer"]["name"],
        "issueYear": issued[:4],
        "issueMonth": str(int(issued[5:7])),
        "certUrl": cert_url,
        "certId": credential["id"],
    }
    return f"{LINKEDIN_ADD}?{urlencode(params)}"
