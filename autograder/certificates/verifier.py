"""Verifying a certificate: every check a careful verifier makes, each reported on its own line.

1. **JSON** - the file parses, and is one JSON object.
2. **structure** - an ``OpenBadgeCredential`` under the VC 2.0 and Open Badges contexts, with
   ``id``, ``issuer``, ``validFrom`` and the achievement; only bundled contexts are accepted.
3. **proof** - one embedded ``DataIntegrityProof`` with cryptosuite ``eddsa-rdfc-2022``.
4. **issuer key** - the ``verificationMethod`` is a published key of the course (``trust.py``) and
   belongs to the credential's ``issuer``. A valid signature by an unknown key proves nothing.
5. **signature** - Ed25519 over the canonical proof options and document (``proof.py``).
6. **revocation** - the credential id is not on that issuer's revocation list.
7. **dates** - ``validFrom`` (and the proof's ``created``) not in the future, ``validUntil`` not
   past.

:func:`verify_credential` never raises: malformed input becomes a failed check with a reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import proof as di
from .canon import CanonicalizationError
from .contexts import VC_V2, bundled
from .credential import subject_name
from .multikey import MultikeyError, public_key_from_verification_method
from .trust import find_issuer, revocation_of

CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    credential: dict | None = None
    issuer_profile: dict | None = None

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def summary(self) -> str:
        if not self.valid:
            failed = [c for c in self.checks if not c.ok]
            return f"INVALID: {failed[0].name}: {failed[0].detail}"
        cred = self.credential
        achievement = cred["credentialSubject"]["achievement"]["name"]
        issuer = cred["issuer"].get("name", cred["issuer"]["id"])
        text = (f"VALID: {subject_name(cred) or 'the holder'} earned \"{achievement}\" from "
                f"{issuer}, issued {cred['validFrom'][:10]}")
        if self.issuer_profile and self.issuer_profile.get("demo"):
            text += ("\nWARNING: signed with a throwaway DEMO key - "
                     "an example, not a real certificate.")
        return text

    def report(self) -> str:
        lines = [f"  [{'ok' if c.ok else 'FAIL':>4}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines + [self.summary()])


def _parse_time(value, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} is missing")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a date-time") from None
    if t.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no time zone")
    return t


def _structure(cred) -> str:
    """Raise ValueError naming the first structural problem; return a description when fine."""
    if not isinstance(cred, dict):
        raise ValueError("a credential is a JSON object, this is a " + type(cred).__name__)
    ctx = cred.get("@context")
    ctx = ctx if isinstance(ctx, list) else [ctx]
    if not ctx or ctx[0] != VC_V2:
        raise ValueError(f"the first @context must be {VC_V2} (a VC 2.0 credential)")
    unknown = [c for c in ctx if not isinstance(c, str) or c not in bundled()]
    if unknown:
        raise ValueError(f"unknown @context {unknown[0]!r}: only the bundled contexts are allowed")
    types = cred.get("type") if isinstance(cred.get("type"), list) else [cred.get("type")]
    for t in ("VerifiableCredential", "OpenBadgeCredential"):
        if t not in types:
            raise ValueError(f"type does not include {t!r}")
    if not isinstance(cred.get("id"), str):
        raise ValueError("the credential has no id")
    issuer = cred.get("issuer")
    if not isinstance(issuer, dict) or not isinstance(issuer.get("id"), str):
        raise ValueError("the issuer must be a Profile object with an id")
    subject = cred.get("credentialSubject")
    if not isinstance(subject, dict) or not isinstance(subject.get("achievement"), dict) \
            or not isinstance(subject["achievement"].get("name"), str):
        raise ValueError("credentialSubject.achievement with a name is missing")
    _parse_time(cred.get("validFrom"), "validFrom")
    return f"OpenBadgeCredential (VC 2.0) {cred['id']}"


def verify_credential(data, trusted: list[dict], now: datetime | None = None) -> Verification:
    """Run every check on ``data`` (JSON text, bytes or an already-parsed object)."""
    v = Verification()
    now = now or datetime.now(timezone.utc)
    if isinstance(data, (str, bytes)):
        try:
            cred = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            v.add("JSON", False, f"not valid JSON ({exc})")
            return v
        v.add("JSON", True, "parsed")
    else:
        cred = data
    try:
        v.add("structure", True, _structure(cred))
    except ValueError as exc:
        v.add("structure", False, str(exc))
        return v
    v.credential = cred
    try:
        p = di.check_proof_shape(cred.get("proof"))
        v.add("proof", True, f"{p['type']} / {p['cryptosuite']}, created {p['created']}")
    except di.ProofError as exc:
        v.add("proof", False, str(exc))
        return v
    try:
        controller, public_key = public_key_from_verification_method(p["verificationMethod"])
    except MultikeyError as exc:
        v.add("issuer key", False, str(exc))
        return v
    profile = find_issuer(trusted, p["verificationMethod"])
    if profile is None:
        v.add("issuer key", False, f"{controller} is not a published key of this course's issuer "
                                   f"({len(trusted)} trusted key(s) known)")
    elif controller != cred["issuer"]["id"]:
        v.add("issuer key", False, f"the proof's key belongs to {controller}, but the credential "
                                   f"names issuer {cred['issuer']['id']}")
    else:
        v.issuer_profile = profile
        label = " (DEMO key)" if profile.get("demo") else ""
        v.add("issuer key", True, f"published key of \"{profile['issuer']['name']}\"{label}")
    try:
        ok = di.verify(cred, public_key)
        v.add("signature", ok, "Ed25519 signature over the RDFC-1.0 canonical form verifies" if ok
              else "Ed25519 signature does not match: the credential was changed after signing, "
                   "or signed by another key")
    except (CanonicalizationError, di.ProofError) as exc:
        v.add("signature", False, str(exc))
    if profile is not None:
        entry = revocation_of(profile, cred["id"])
        v.add("revocation", entry is None,
              f"not on the issuer's revocation list ({len(profile.get('revoked', []))} revoked)"
              if entry is None else
              f"REVOKED on {entry.get('revokedAt', '?')}: "
              f"{entry.get('reason') or 'no reason given'}")
    try:
        valid_from = _parse_time(cred["validFrom"], "validFrom")
        created = _parse_time(p["created"], "proof created")
        problems = []
        if valid_from > now + CLOCK_SKEW:
            problems.append(f"not valid before {cred['validFrom']}")
        if created > now + CLOCK_SKEW:
            problems.append(f"proof created in the future ({p['created']})")
        if "validUntil" in cred and _parse_time(cred["validUntil"], "validUntil") < now:
            problems.append(f"expired on {cred['validUntil']}")
        until = f"until {cred['validUntil']}" if "validUntil" in cred else "no expiry"
        v.add("dates", not problems,
              "; ".join(problems) or f"valid from {cred['validFrom']}, {until}")
    except ValueError as exc:
        v.add("dates", False, str(exc))
    return v
