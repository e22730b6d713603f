"""``keys publish``: what an issuer must put on the web, and its entry in the trust list.

The issuer's domain serves (``didweb.py``, ``status_list.py``)::

    <base>/.well-known/did.json    the DID document: public keys, created/retired dates
                                   (<base>/did.json when the base URL has a path)
    <base>/status/1                the signed Bitstring Status List (revocation bits)
    <base>/trust.json              this issuer's one-entry trust list (for others to add)

and the verification page bundles the same data, copied, in ``docs/verify/trusted-issuers.json``
(``.js``), so that verifying works offline. The status list is re-signed on every publish, so its
``validFrom`` says how fresh the copy is. A DEMO issuer goes to ``demo-issuers.json`` instead:
its credentials must never verify as VALID.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from . import trust
from .keys import Issuer, now_utc, signed_status_list


def site_files(issuer: Issuer, status: dict) -> dict[str, dict]:
    """``{path below the base URL: JSON}`` for the files the issuer's domain must serve."""
    did_path = "did.json" if urlsplit(issuer.base_url).path.strip("/") else ".well-known/did.json"
    entry = trust.entry_for(issuer, {issuer.status_list_url: status}, status["validFrom"])
    return {did_path: issuer.did_document(), "status/1": status,
            "trust.json": trust.document([entry])}


def write_site(issuer: Issuer, site_dir: Path, status: dict) -> list[Path]:
    paths = []
    for relative, data in site_files(issuer, status).items():
        path = Path(site_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def publish(issuer: Issuer, site_dir: Path, list_dir: Path) -> tuple[list[Path], list[Path]]:
    """Re-sign the status list, write the site files into ``site_dir`` and merge the issuer's
    entry into ``list_dir``'s trusted-issuers (demo-issuers for a demo issuer)."""
    when = now_utc()
    status = signed_status_list(issuer, when)
    site = write_site(issuer, site_dir, status)
    entry = trust.entry_for(issuer, {issuer.status_list_url: status}, when)
    names = (trust.DEMO_JSON, trust.DEMO_JS) if issuer.is_demo else (trust.TRUST_JSON,
                                                                       trust.TRUST_JS)
    return site, trust.merge_into(entry, list_dir, *names)
