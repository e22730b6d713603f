"""The JSON-LD contexts, bundled, and a document loader that never touches the network.

A credential's ``@context`` lists URLs. JSON-LD processing must read those documents to know what
each property *means* (``name`` -> ``https://schema.org/name``), and the signature covers those
meanings, not the JSON text. Fetching them at verification time would be slow, would leak who
verifies what, and would let whoever controls the URL change the meaning of signed data. So the
course ships copies (``context_files/*.jsonld``, copied from the npm packages that publish them by
``docs/verify/build.mjs``) and refuses every other URL.

The same files are bundled into the browser page (``docs/verify/vendor/ld-bundle.js``); a test
checks that both carry identical contexts.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CONTEXT_DIR = Path(__file__).with_name("context_files")
VC_V2 = "https://www.w3.org/ns/credentials/v2"
OB_V3 = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CREDENTIAL_CONTEXTS = [VC_V2, OB_V3]


class UnknownContextError(ValueError):
    """A document names a JSON-LD context that is not bundled with the course."""


@lru_cache(maxsize=1)
def bundled() -> dict[str, dict]:
    """``{url: context document}`` for every bundled context."""
    index = json.loads((CONTEXT_DIR / "index.json").read_text(encoding="utf-8"))
    return {url: json.loads((CONTEXT_DIR / name).read_text(encoding="utf-8"))
            for url, name in index.items()}


def make_loader(extra: dict[str, dict] | None = None):
    """A pyld document loader serving the bundled contexts (plus ``extra``, used by tests)."""
    documents = dict(bundled())
    documents.update(extra or {})

    def loader(url, options=None):
        if url not in documents:
            raise UnknownContextError(
                f"unknown JSON-LD context {url!r}: only the bundled contexts are allowed "
                f"({', '.join(sorted(documents))})")
        return {"contextUrl": None, "documentUrl": url, "document": documents[url]}

    return loader
