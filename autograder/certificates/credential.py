"""The Open Badges 3.0 ``OpenBadgeCredential`` (a W3C Verifiable Credential 2.0) for one student.

Shape (every property is defined by the two bundled contexts, so all of it is signed)::

    {"@context": [VC 2.0, Open Badges 3.0.3],
     "id": "urn:uuid:...",                      unique id of this credential
     "type": ["VerifiableCredential", "OpenBadgeCredential"],
     "name",                                    what a wallet shows as the title
     "issuer": {Profile: did:web id, name, url},
     "validFrom", "awardedDate",               when it was issued (no expiry)
     "credentialSubject": {"type": ["AchievementSubject"],
        "identifier": [{IdentityObject: the student's name, identityType "name", not hashed}],
        "achievement": {Achievement: id, name, description, criteria, achievementType}},
     "credentialStatus": {BitstringStatusListEntry}  where its revocation bit is (status_list.py)
     "proof": {DataIntegrityProof, eddsa-rdfc-2022}}     added by proof.sign

Students have no DID, so the subject is identified by name (Open Badges' ``IdentityObject`` with
``identityType: "name"``): the credential says *who* passed, the signature says *who says so*.
"""
from __future__ import annotations

import uuid

from .contexts import CREDENTIAL_CONTEXTS

ACHIEVEMENT_NAME = "LLM Inference Optimization"
ACHIEVEMENT_DESCRIPTION = (
    "Implemented and measured, in autograded notebooks, the techniques that make LLM inference "
    "fast: quantization, pruning, distillation, KV caching, continuous batching, PagedAttention, "
    "speculative decoding, FlashAttention and serving engines.")


def certificate_title() -> str:
    return f"{ACHIEVEMENT_NAME} - Certificate of Completion"


def build_credential(student_name: str, issuer: dict, issued: str, criteria: str,
                     credential_id: str | None = None, status: dict | None = None) -> dict:
    """The unsigned credential. ``issuer`` is the Open Badges ``Profile`` (id = the did:web, name,
    url); ``status`` the ``credentialStatus`` entry (``status_list.status_entry``)."""
    issuer = dict(issuer)
    course_url = issuer.get("url", "")
    credential = {
        "@context": list(CREDENTIAL_CONTEXTS),
        "id": credential_id or f"urn:uuid:{uuid.uuid4()}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": certificate_title(),
        "issuer": issuer,
        "validFrom": issued,
        "awardedDate": issued,
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": [{"type": "IdentityObject", "identityType": "name",
                            "identityHash": student_name, "hashed": False}],
            "achievement": {
                "id": f"{course_url}/achievements/certificate-of-completion",
                "type": ["Achievement"],
                "achievementType": "CertificateOfCompletion",
                "name": ACHIEVEMENT_NAME,
                "description": ACHIEVEMENT_DESCRIPTION,
                "criteria": {"narrative": criteria},
            },
        },
    }
    if status is not None:
        credential["credentialStatus"] = dict(status)
    return credential


def _items(value) -> list:
    """A JSON-LD value as a list: ``x``, ``[x, ...]``, ``{"@set": [...]}``, ``{"@list": [...]}``."""
    if isinstance(value, dict) and len(value) == 1 and ("@set" in value or "@list" in value):
        value = next(iter(value.values()))
    return value if isinstance(value, list) else [value]


def subject_name(credential) -> str | None:
    """The recipient's name as written in the credential (None if absent or oddly shaped).

    Never raises: any JSON-LD spelling (a single object, an array, ``@set``) is read, and
    anything unexpected gives None.
    """
    subject = credential.get("credentialSubject") if isinstance(credential, dict) else None
    if not isinstance(subject, dict):
        return None
    for ident in _items(subject.get("identifier")):
        if isinstance(ident, dict) and ident.get("identityType") == "name" \
                and ident.get("hashed") in (False, "false") \
                and isinstance(ident.get("identityHash"), str):
            return ident["identityHash"]
    return None
