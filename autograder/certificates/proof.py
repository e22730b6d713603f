"""The ``eddsa-rdfc-2022`` Data Integrity proof: Ed25519 over canonical RDF.

This follows the W3C *Data Integrity EdDSA Cryptosuites v1.0* recommendation, section
"eddsa-rdfc-2022", step by step:

1. **Transformation** - canonicalize the credential *without* its ``proof`` (``canon.py``).
2. **Proof configuration** - the proof's own options (``type``, ``cryptosuite``, ``created``,
   ``verificationMethod``, ``proofPurpose``) with the credential's ``@context``, canonicalized the
   same way. Signing the options too means nobody can, say, change ``created`` or the key.
3. **Hashing** - ``SHA-256(canonical proof config) || SHA-256(canonical document)``: 64 bytes.
4. **Signing** - Ed25519 over those 64 bytes; ``proofValue`` = multibase base58btc(signature).

Verification repeats 1-3 from the received document and checks the signature with the public key
named by ``verificationMethod``. Nothing here decides whether that key should be *trusted*: that
is ``trust.py``'s job.
"""
from __future__ import annotations

import copy
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canon import canonicalize
from .multikey import MultikeyError, multibase_decode, multibase_encode

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-rdfc-2022"
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class ProofError(ValueError):
    """A proof that is malformed or uses something this verifier does not support."""


def hash_data(document: dict, proof_options: dict, extra_contexts: dict | None = None) -> bytes:
    """Steps 1-3: the 64 bytes that get signed (``document`` has no ``proof``)."""
    config = {k: v for k, v in proof_options.items() if k != "proofValue"}
    config["@context"] = document.get("@context")
    canonical_config = canonicalize(config, extra_contexts)
    canonical_document = canonicalize(document, extra_contexts)
    return (hashlib.sha256(canonical_config.encode("utf-8")).digest()
            + hashlib.sha256(canonical_document.encode("utf-8")).digest())


def sign(document: dict, private_key: Ed25519PrivateKey, verification_method: str,
         created: str, proof_purpose: str = "assertionMethod") -> dict:
    """Return a copy of ``document`` with an embedded ``eddsa-rdfc-2022`` proof."""
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    options = {"type": PROOF_TYPE, "cryptosuite": CRYPTOSUITE, "created": created,
               "verificationMethod": verification_method, "proofPurpose": proof_purpose}
    signature = private_key.sign(hash_data(unsecured, options))
    secured = copy.deepcopy(unsecured)
    secured["proof"] = dict(options, proofValue=multibase_encode(signature))
    return secured


def single_proof(secured: dict) -> dict:
    """``secured`` with its proof as one object: a one-element ``proof`` array (as Open Badges'
    JSON schema allows) is unwrapped; several proofs are refused - this verifier would have to
    decide which one counts, and a second proof by an unknown key must not ride along."""
    proof = secured.get("proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise ProofError(f"{len(proof)} proofs in a 'proof' array: exactly one is accepted")
        return dict(secured, proof=proof[0])
    return secured


def check_proof_shape(proof) -> dict:
    """Validate the proof object's fields before any cryptography; returns it."""
    if not isinstance(proof, dict):
        raise ProofError("the credential has no proof object (expected one embedded 'proof')")
    if proof.get("type") != PROOF_TYPE:
        raise ProofError(f"unsupported proof type {proof.get('type')!r}: expected {PROOF_TYPE!r}")
    if proof.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(f"unknown cryptosuite {proof.get('cryptosuite')!r}: this verifier "
                         f"supports only {CRYPTOSUITE!r}")
    for field in ("verificationMethod", "proofPurpose", "proofValue", "created"):
        if not isinstance(proof.get(field), str) or not proof.get(field):
            raise ProofError(f"the proof has no {field!r}")
    if proof["proofPurpose"] != "assertionMethod":
        raise ProofError(f"proofPurpose is {proof['proofPurpose']!r}, expected 'assertionMethod'")
    if not _DATETIME.match(proof["created"]):
        raise ProofError(f"proof 'created' {proof['created']!r} is not an XML Schema dateTime")
    return proof


def verify(secured: dict, public_key: bytes, extra_contexts: dict | None = None) -> bool:
    """True when the embedded proof is a valid signature by ``public_key`` (32 raw bytes).

    Raises :class:`ProofError` for a malformed or unsupported proof, and
    ``canon.CanonicalizationError`` for a document that cannot be canonicalized safely.
    """
    proof = check_proof_shape(secured.get("proof"))
    unsecured = {k: v for k, v in secured.items() if k != "proof"}
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if "@context" in options:
        # The spec allows the proof to carry its own @context: it must be a prefix of the
        # document's, and then it is the context both are processed with.
        ctx = options.pop("@context")
        ctx_list = ctx if isinstance(ctx, list) else [ctx]
        doc_ctx = unsecured.get("@context")
        doc_list = doc_ctx if isinstance(doc_ctx, list) else [doc_ctx]
        if doc_list[:len(ctx_list)] != ctx_list:
            raise ProofError("the proof's @context does not match the credential's")
        unsecured["@context"] = ctx
    try:
        signature = multibase_decode(proof["proofValue"])
    except MultikeyError as exc:
        raise ProofError(f"proofValue is not multibase base58btc: {exc}") from None
    if len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, hash_data(unsecured, options, extra_contexts))
    except InvalidSignature:
        return False
    return True
