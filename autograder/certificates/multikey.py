"""Multibase and Multikey: how an Ed25519 public key is written as text.

The W3C Data Integrity specs never put raw bytes in JSON. Two small encodings are used instead:

* **multibase** - a one-character prefix names the base of the text that follows. Here always
  ``z`` = base58btc, Bitcoin's alphabet without the look-alikes 0/O and I/l.
* **multicodec** - a varint prefix names what the bytes are. ``0xed 0x01`` = an Ed25519 public
  key, so an Ed25519 public key in Multikey form always starts with ``z6Mk``.

A DID document (``didweb.py``) lists each key as a ``Multikey`` verification method with its
``publicKeyMultibase`` in this form.

The ``proofValue`` of a proof is the 64-byte signature in multibase base58btc (no multicodec).
"""
from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}
ED25519_PUB_PREFIX = b"\xed\x01"  # multicodec 'ed25519-pub' as an unsigned varint


class MultikeyError(ValueError):
    """A multibase string or Multikey that cannot be decoded."""


def b58encode(data: bytes) -> str:
    """Base58btc: the bytes as one big number written in base 58; leading zero bytes become '1'."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; a character outside the alphabet: :class:`MultikeyError`."""
    n = 0
    for ch in text:
        if ch not in _INDEX:
            raise MultikeyError(f"{ch!r} is not a base58btc character")
        n = n * 58 + _INDEX[ch]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + body


def multibase_encode(data: bytes) -> str:
    """Multibase base58btc: ``'z'`` + base58btc(data)."""
    return "z" + b58encode(data)


def multibase_decode(text: str) -> bytes:
    """Decode a multibase base58btc string (the only base this course uses)."""
    if not isinstance(text, str) or not text.startswith("z") or len(text) < 2:
        raise MultikeyError("expected a multibase base58btc string starting with 'z'")
    return b58decode(text[1:])


def public_key_to_multikey(raw: bytes) -> str:
    """32 raw Ed25519 public-key bytes -> ``publicKeyMultibase`` (``z6Mk...``)."""
    if len(raw) != 32:
        raise MultikeyError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return multibase_encode(ED25519_PUB_PREFIX + raw)


def multikey_to_public_key(multikey: str) -> bytes:
    """``publicKeyMultibase`` -> 32 raw Ed25519 public-key bytes (checks the multicodec prefix)."""
    data = multibase_decode(multikey)
    if data[:2] != ED25519_PUB_PREFIX or len(data) != 34:
        raise MultikeyError("not an Ed25519 Multikey (expected multicodec 0xed01 + 32 bytes)")
    return data[2:]
