"""The links a certificate carries: a short public URL, LinkedIn's "add to profile", and an
offline self-verifying link.

**Short URL** (``<base>/c/<short_id>``): what the PDF's QR code and LinkedIn's ``certUrl`` point
to. The course service answers it with the credential and its verification. It is short (a QR
code stays small and scannable, LinkedIn keeps it intact) and it reveals nothing by itself: the
id is random (:func:`short_id`), not derived from the name or the credential.

**Self-verifying link** (``<page>#vc=<data>``, for offline use): carries the whole credential -
compact JSON, raw DEFLATE, base64url. The part after ``#`` never leaves the browser, and the
static page verifies it offline. It is long (a few KB), so it is *not* what LinkedIn or the QR
code carry. :func:`unpack` caps inflation while inflating, so a small hostile link cannot expand
into gigabytes.

**LinkedIn.** The documented "Add to profile" URL pre-fills a *Licenses & certifications* entry:
``https://www.linkedin.com/profile/add?startTask=CERTIFICATION_NAME&name=...
&organizationName=...&issueYear=...&issueMonth=...&certUrl=...&certId=...``.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import zlib
from urllib.parse import urlencode

LINKEDIN_ADD = "https://www.linkedin.com/profile/add"
MAX_PACKED_CHARS = 100_000     # a real credential packs to ~2 KB
MAX_UNPACKED_BYTES = 64_000    # the verifier's size limit for a credential


class LinkError(ValueError):
    """A ``#vc=`` link that does not decode, or inflates beyond the limit."""


def short_id() -> str:
    """A random, URL-safe id of 12 characters (72 bits): the credential's public short name."""
    return secrets.token_urlsafe(9)


def short_url(base_url: str, sid: str) -> str:
    """``<base>/c/<short_id>``: the public address of one credential at the course service."""
    return f"{base_url.rstrip('/')}/c/{sid}"


def pack(credential: dict) -> str:
    """Credential -> base64url(raw DEFLATE(compact JSON)), no padding."""
    text = json.dumps(credential, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(text) + c.flush()
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unpack_text(packed: str, max_bytes: int = MAX_UNPACKED_BYTES) -> bytes:
    """The credential's JSON bytes from a packed link, refusing more than ``max_bytes``."""
    if len(packed) > MAX_PACKED_CHARS:
        raise LinkError(f"the #vc= part is longer than {MAX_PACKED_CHARS} characters")
    try:
        data = base64.b64decode(packed + "=" * (-len(packed) % 4), altchars=b"-_", validate=True)
        inflater = zlib.decompressobj(-15)
        text = inflater.decompress(data, max_bytes + 1)
        if not text:
            raise ValueError("empty")
    except (binascii.Error, ValueError, zlib.error):
        raise LinkError("the verification link is damaged (its #vc= part does not decode)") \
            from None
    if len(text) > max_bytes or inflater.unconsumed_tail:
        raise LinkError(f"the #vc= link inflates to more than {max_bytes} bytes: refused "
                        "(a real credential is a few KB)")
    return text


def unpack(packed: str) -> dict:
    """Inverse of :func:`pack` (plain ``json.loads``: use the verifier for untrusted input)."""
    return json.loads(unpack_text(packed))


def verification_url(verify_page: str, credential: dict) -> str:
    """``<page>#vc=<packed credential>``: opening it verifies the credential in the browser."""
    return f"{verify_page.split('#')[0]}#vc={pack(credential)}"


def linkedin_url(credential: dict, cert_url: str) -> str:
    """LinkedIn "add to profile" link; ``cert_url`` is the credential's short public URL."""
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
