"""Input limits: reading untrusted JSON before any JSON-LD work.

Verification runs JSON-LD expansion and RDF canonicalization, whose cost grows with the input -
for a few crafted shapes (many blank nodes referring to each other) much faster than linearly. A
real credential is about 3 KB with fewer than 20 objects, so anything far beyond that is refused
*first*, cheaply, with the reason:

* **size** - at most :data:`MAX_BYTES` of JSON text (``links.py`` caps a ``#vc=`` link the same
  way while inflating it);
* **nesting** and **object count** - counted on the text (strings removed by one regex) before
  parsing, so neither Python's recursion nor a huge parse is ever reached;
* **strict JSON** - a key repeated in one object is refused (parsers disagree on which copy wins,
  so a verifier and a wallet could show different names), and so are ``NaN``/``Infinity``
  (not JSON; they cannot be canonicalized);
* **no embedded contexts** - ``@context`` only at the top (``canon.py`` accepts only the bundled
  ones there); a nested context could redefine terms.

``canon.py`` adds the last limit, on node objects after JSON-LD expansion (:data:`MAX_NODES`).
"""
from __future__ import annotations

import json
import re

MAX_BYTES = 64_000
MAX_DEPTH = 24
MAX_OBJECTS = 100      # JSON objects and arrays in the text; a credential has ~20
MAX_NODES = 30         # nodes after JSON-LD expansion: a credential has ~8; a 6-node clique
                       # (36 nodes, seconds to canonicalize) never fits
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


class InputError(ValueError):
    """Input refused before any JSON-LD work, with the reason."""


def _reject_constant(name: str):
    raise InputError(f"{name} is not a JSON number (NaN and Infinity are refused)")


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise InputError(f"the key {key!r} appears twice in one object: refused (readers "
                             "would disagree on which value counts)")
        obj[key] = value
    return obj


def parse_json(data: str | bytes, max_bytes: int = MAX_BYTES):
    """Parse untrusted JSON within the limits above; :class:`InputError` says what was refused."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise InputError(f"{len(data)} bytes: larger than the {max_bytes}-byte limit "
                         "(a real credential is a few KB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid JSON (not UTF-8: {exc})") from None
    depth = deepest = containers = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            containers += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    if deepest > MAX_DEPTH:
        raise InputError(f"nested {deepest} levels deep: more than the limit of {MAX_DEPTH}")
    if containers > MAX_OBJECTS:
        raise InputError(f"{containers} JSON objects and arrays: more than the limit of "
                         f"{MAX_OBJECTS} (a real credential has about 20)")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except InputError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not valid JSON ({exc})") from None


def to_json(obj) -> bytes:
    """An already-parsed object back to text, so that it goes through :func:`parse_json` too."""
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"not JSON data ({type(exc).__name__}: {exc})") from None


def check_no_nested_context(node, top: bool = True) -> None:
    """Refuse ``@context`` anywhere but at the top of the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@context" and not top:
                raise InputError("an embedded @context inside the document: refused (only the "
                                 "top-level bundled contexts are allowed)")
            check_no_nested_context(value, top=False)
    elif isinstance(node, list):
        for item in node:
            check_no_nested_context(item, top=False)


def count_nodes(expanded) -> int:
    """Node objects and node references in an expanded JSON-LD document (not values, lists)."""
    if isinstance(expanded, list):
        return sum(count_nodes(item) for item in expanded)
    if isinstance(expanded, dict):
        own = 0 if ("@value" in expanded or "@list" in expanded or "@set" in expanded) else 1
        return own + sum(count_nodes(v) for k, v in expanded.items() if k != "@value")
    return 0
