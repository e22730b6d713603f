"""did:web: an issuer identifier bound to a web domain, and fetching what it publishes.

A signature only says "the holder of this key signed this". did:key names a bare key, which anyone
can make; **did:web** names a *domain*: ``did:web:certs.example.org`` is controlled by whoever
serves ``https://certs.example.org/.well-known/did.json``, the *DID document* that lists the
issuer's public keys. So "is this the course's key?" becomes "does the course's domain publish
this key?" - the same trust as the course's web site, plus key rotation for free (publish a new
key, mark the old one retired).

Mapping (the did:web method specification)::

    https://certs.example.org            did:web:certs.example.org
    http://127.0.0.1:8000                did:web:127.0.0.1%3A8000      (':' of a port -> %3A)
    https://x.org/inferlab               did:web:x.org:inferlab        (path segments -> ':')

    did:web:certs.example.org      -> https://certs.example.org/.well-known/did.json
    did:web:x.org:inferlab         -> https://x.org/inferlab/did.json

Plain ``http`` is allowed only for loopback hosts (a service on this machine, tests); everything
else is ``https``. :func:`fetch` is the only network access of the certificate code, and only
``verify --online`` (or a service) calls it: size-capped, time-limited, no redirects.
"""
from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
MAX_FETCH_BYTES = 1_000_000
FETCH_TIMEOUT_S = 10.0
DID_CONTEXTS = ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]


class DidWebError(ValueError):
    """A base URL or DID that does not map to did:web, or a failed/refused fetch."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 - the only hosts reachable over plain http."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def did_from_url(base_url: str) -> str:
    """The did:web of a service's base URL (``https://``, or ``http://`` on loopback only)."""
    parts = urlsplit(str(base_url).strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DidWebError(f"{base_url!r} is not an http(s) URL like https://certs.example.org")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise DidWebError(f"{base_url!r}: plain http is only allowed for 127.0.0.1/localhost; "
                          "a public issuer needs https")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise DidWebError(f"{base_url!r}: a base URL has no query, fragment or user name")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    return "did:web:" + ":".join([quote(host, safe="[]")] + [quote(s, safe="") for s in segments])


def base_url_of(did: str) -> str:
    """Inverse of :func:`did_from_url`: ``did:web:x.org:inferlab`` -> ``https://x.org/inferlab``."""
    if not isinstance(did, str) or not did.startswith("did:web:") or "#" in did or "/" in did:
        raise DidWebError(f"{did!r} is not a did:web identifier")
    host, *segments = did[len("did:web:"):].split(":")
    host = unquote(host)
    hostname = urlsplit("//" + host).hostname
    if not host or not hostname:
        raise DidWebError(f"{did!r} names no host")
    scheme = "http" if is_loopback(hostname) else "https"
    return f"{scheme}://{host}" + "".join("/" + unquote(s) for s in segments)


def did_document_url(did: str) -> str:
    """Where the DID document of ``did`` is served (http only for loopback hosts)."""
    base = base_url_of(did)
    return base + ("/did.json" if urlsplit(base).path else "/.well-known/did.json")


def did_document(did: str, keys: list[dict]) -> dict:
    """The DID document listing ``keys`` ([{id, publicKeyMultibase, created, retired}]).

    Every key, retired ones too, stays in ``assertionMethod``: old certificates were signed by
    it. A retired key carries ``revoked`` = its retirement date; proofs made at or after it are
    refused by the verifier.
    """
    methods = []
    for key in keys:
        method = {"id": f"{did}#{key['id']}", "type": "Multikey", "controller": did,
                  "publicKeyMultibase": key["publicKeyMultibase"], "created": key["created"]}
        if key.get("retired"):
            method["revoked"] = key["retired"]
        methods.append(method)
    return {"@context": list(DID_CONTEXTS), "id": did, "verificationMethod": methods,
            "assertionMethod": [m["id"] for m in methods]}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise DidWebError(f"{req.full_url} redirects to {newurl}: refused (no redirects)")


def check_fetchable(url: str) -> None:
    """Refuse anything but https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise DidWebError(f"refusing to fetch {url!r}: only https (or http on 127.0.0.1/localhost)")


def fetch(url: str, *, max_bytes: int = MAX_FETCH_BYTES, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """GET ``url`` (https, or http on loopback), at most ``max_bytes``, no redirects."""
    check_fetchable(url)
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except DidWebError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DidWebError(f"cannot fetch {url}: {exc}") from None
    if len(data) > max_bytes:
        raise DidWebError(f"{url} is larger than {max_bytes} bytes: refused")
    return data
