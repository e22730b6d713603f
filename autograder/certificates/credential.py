"""The Open Badges 3.0 ``OpenBadgeCredential`` (a W3C Verifiable Credential 2.0) for one student.

Shape (every property is defined by the two bundled contexts, so all of it is signed)::

    {"@context": [VC 2.0, Open Badges 3.0.3],
     "id": "urn:uuid:...",                      unique id of this credential
     "type": ["VerifiableCredential", "OpenBadgeCredential"],
     "name",                                    what a wallet shows as the title
     "issuer": {Profile: did:key id, name, url},
     "validFrom", "awardedDate",               when it was issued (no expiry)
     "credentialSubject": {"type": ["AchievementSubject"],
        "identifier": [{IdentityObject: the student's name, identityType "name", not hashed}],
        "achievement": {Achievement: id, name, description, criteria, achievementType}},
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


def build_credential(student_name: str, issuer_profile: dict, issued: str, criteria: str,
                     credential_id: str | None = None) -> dict:
    """The unsigned credential. ``issuer_profile`` is the public profile from ``keys.py``."""
    issuer = dict(issuer_profile["issuer"])
    course_url = issuer.get("url", "")
    return {
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
                "id": f"{course_url}#certificate-of-completion",
                "type": ["Achievement"],
                "achievementType": "CertificateOfCompletion",
                "name": ACHIEVEMENT_NAME,
                "description": ACHIEVEMENT_DESCRIPTION,
                "criteria": {"narrative": criteria},
            },
        },
    }


def subject_name(credential: dict) -> str | None:
    """The recipient's name as written in the credential (None if absent)."""
    try:
        for ident in credential["credentialSubject"]["identifier"]:
            if ident.get("identityType") == "name" and not ident.get("hashed"):
                return ident.get("identityHash")
    except (KeyError, TypeError):
        return None
    return None
