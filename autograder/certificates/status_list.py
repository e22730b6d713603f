"""Revocation: a W3C Bitstring Status List (Verifiable Credentials Bitstring Status List v1.0).

Each credential gets a random position (``statusListIndex``) in one long list of bits that the
issuer publishes, signed, at ``<base>/status/1``; bit = 1 means revoked. A verifier fetches (or
has cached) the whole list and reads one bit, so:

* the issuer never learns *which* credential someone checks (everyone downloads the same list);
* nothing about *why* or *when* a credential was revoked is published - just one bit;
* indexes are drawn at random from the unused ones, so neighbouring bits say nothing about
  who was certified together.

Encoding: bit ``i`` is byte ``i // 8``, bit ``7 - i % 8`` (most significant first); the list is
at least 131072 bits (16 KB), GZIP-compressed, base64url without padding, prefixed ``u``
(multibase). A list of zeros compresses to a few dozen bytes; :func:`decode` caps inflation so
a hostile list cannot become gigabytes.
"""
from __future__ import annotations

import base64
import gzip
import secrets
import zlib

LIST_BITS = 131072
MAX_LIST_BYTES = 1 << 20   # 8 Mbit: far more credentials than a course issues


class StatusListError(ValueError):
    """An encodedList that cannot be decoded, or an index outside the list."""


def new_bits(n_bits: int = LIST_BITS) -> bytearray:
    """An all-zero list (nothing revoked)."""
    return bytearray(max(n_bits, LIST_BITS) // 8)


def _position(bits, index: int) -> tuple[int, int]:
    if not isinstance(index, int) or not 0 <= index < len(bits) * 8:
        raise StatusListError(f"status index {index!r} is outside the list "
                              f"(0..{len(bits) * 8 - 1})")
    return index // 8, 7 - index % 8


def set_bit(bits: bytearray, index: int, value: bool = True) -> None:
    byte, shift = _position(bits, index)
    if value:
        bits[byte] |= 1 << shift
    else:
        bits[byte] &= ~(1 << shift) & 0xFF


def get_bit(bits, index: int) -> bool:
    byte, shift = _position(bits, index)
    return bool(bits[byte] >> shift & 1)


def encode(bits) -> str:
    """``u`` + base64url(GZIP(bits)), no padding."""
    data = gzip.compress(bytes(bits), mtime=0)
    return "u" + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode(text: str, max_bytes: int = MAX_LIST_BYTES) -> bytes:
    """Inverse of :func:`encode`; refuses a list that inflates beyond ``max_bytes``."""
    if not isinstance(text, str) or not text.startswith("u") or len(text) > 4 * max_bytes:
        raise StatusListError("encodedList is not a multibase base64url ('u...') string")
    try:
        data = base64.urlsafe_b64decode(text[1:] + "=" * (-(len(text) - 1) % 4))
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)   # gzip framing
        bits = inflater.decompress(data, max_bytes + 1)
    except (ValueError, zlib.error) as exc:
        raise StatusListError(f"encodedList does not decode: {exc}") from None
    if len(bits) > max_bytes or inflater.unconsumed_tail:
        raise StatusListError(f"encodedList inflates beyond {max_bytes} bytes: refused")
    if len(bits) < LIST_BITS // 8:
        raise StatusListError(f"a status list has at least {LIST_BITS} bits, "
                              f"this one {len(bits) * 8}")
    return bits


def free_index(used: set[int], n_bits: int = LIST_BITS) -> int:
    """A random index not in ``used`` (so indexes reveal nothing about issuing order)."""
    if len(used) >= n_bits:
        raise StatusListError("the status list is full")
    while True:
        index = secrets.randbelow(n_bits)
        if index not in used:
            return index


def status_entry(list_url: str, index: int) -> dict:
    """The ``credentialStatus`` a credential carries: where its bit is."""
    return {"id": f"{list_url}#{index}", "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation", "statusListIndex": str(index),
            "statusListCredential": list_url}


def status_list_credential(list_url: str, issuer_did: str, bits, valid_from: str) -> dict:
    """The unsigned status list credential (sign it with ``proof.sign``, then publish it)."""
    return {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": list_url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer_did,
        "validFrom": valid_from,
        "credentialSubject": {"id": f"{list_url}#list", "type": "BitstringStatusList",
                              "statusPurpose": "revocation", "encodedList": encode(bits)},
    }
