"""RDF Dataset Canonicalization (RDFC-1.0, a.k.a. URDNA2015) of a JSON-LD document.

Why not just sign the JSON bytes? Because the same credential can be written in many ways (key
order, whitespace, ``"type": "X"`` vs ``["X"]``) and every wallet re-serializes it. The
``eddsa-rdfc-2022`` cryptosuite signs the *meaning* instead: the document is expanded with its
contexts into RDF statements (N-Quads), the blank nodes are given canonical names, and the sorted
lines are hashed. Any two encodings of the same statements hash the same; any change of meaning
changes the hash.

"Safe mode" (as jsonld.js's ``safe: true``): a property that the contexts do not define would be
*silently dropped* by JSON-LD expansion, so it would not be signed - a verifier showing it would
show unsigned data. Here such a property, or an IRI that is not absolute, is an error.

Cost: canonicalization gives blank nodes names by hashing their neighbourhoods, which for many
mutually-referring blank nodes takes time far beyond linear. So the nodes are counted after
expansion and a document with more than ``limits.MAX_NODES`` is refused *before* normalization
(a credential has fewer than 20).
"""
from __future__ import annotations

import re

from pyld import jsonld

from .contexts import make_loader
from .limits import MAX_NODES, count_nodes

_ABSOLUTE_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


class CanonicalizationError(ValueError):
    """The document cannot be canonicalized safely (unknown term, relative IRI, bad JSON-LD)."""


def _check_iris(node, path="$"):
    """Walk an expanded JSON-LD document and reject relative ``@id``/``@type`` IRIs."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_iris(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "@id" and isinstance(value, str) and not (
                    _ABSOLUTE_IRI.match(value) or value.startswith("_:")):
                raise CanonicalizationError(
                    f"relative IRI {value!r} at {path}: it would not be signed")
            if key == "@type":
                for t in value if isinstance(value, list) else [value]:
                    if isinstance(t, str) and not (
                            _ABSOLUTE_IRI.match(t) or t.startswith(("_:", "@"))):
                        raise CanonicalizationError(
                            f"type {t!r} at {path} is not defined by the contexts")
            if key != "@value":
                _check_iris(value, f"{path}.{key}")


def canonicalize(document: dict, extra_contexts: dict | None = None) -> str:
    """Canonical N-Quads of ``document`` (RDFC-1.0), refusing anything that would go unsigned."""
    loader = make_loader(extra_contexts)
    dropped: list[str] = []
    options = {"documentLoader": loader}
    try:
        expanded = jsonld.expand(document, options,
                                 on_property_dropped=lambda p: dropped.append(str(p)))
    except jsonld.JsonLdError as exc:
        raise CanonicalizationError(f"not valid JSON-LD: {_root_cause(exc)}") from None
    if dropped:
        raise CanonicalizationError(
            f"property {dropped[0]!r} is not defined by the credential's contexts, so it would not "
            "be signed")
    _check_iris(expanded)
    nodes = count_nodes(expanded)
    if nodes > MAX_NODES:
        raise CanonicalizationError(
            f"{nodes} nodes after JSON-LD expansion: more than the limit of {MAX_NODES} "
            "(a real credential has fewer than 20), refused before canonicalization")
    try:
        return jsonld.normalize(expanded, {"algorithm": "URDNA2015",
                                           "format": "application/n-quads",
                                           "documentLoader": loader})
    except jsonld.JsonLdError as exc:
        raise CanonicalizationError(f"cannot canonicalize: {_root_cause(exc)}") from None


def _root_cause(exc: BaseException) -> str:
    """pyld wraps errors several levels deep; the innermost message is the useful one."""
    while exc.__cause__ is not None or getattr(exc, "cause", None) is not None:
        exc = exc.__cause__ or exc.cause
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
