"""Verifying a certificate: every check a careful verifier makes, each reported on its own line.

1. **JSON** - within the input limits (``limits.py``: size, nesting, object count), strict
   (no repeated key, no NaN), one JSON object. Nothing else runs on refused input.
2. **structure** - an ``OpenBadgeCredential`` under the VC 2.0 and Open Badges contexts, with
   ``id``, ``issuer``, ``validFrom`` and the achievement; only bundled contexts, at the top only.
3. **proof** - one embedded ``DataIntegrityProof`` (``eddsa-rdfc-2022``); a one-element array is
   accepted, more than one proof is not.
4. **issuer** - the credential's did:web issuer is in a trust list (``trust.py``), and *which*
   list decides the verdict: the published list -> VALID, the demo list -> DEMO, a list the user
   supplied -> UNOFFICIAL. Published data always wins for a DID it contains. With ``fetch``
   (``--online``) the DID document is fetched from the issuer's domain instead of the cached copy.
5. **issuer key** - the proof's ``verificationMethod`` is an ``assertionMethod`` key of that DID
   document, and the proof was created before the key's retirement (``revoked``) date. Checked
   *before* the signature: an unknown key stops here, with no canonicalization work.
6. **signature** - Ed25519 over the canonical proof options and document (``proof.py``).
7. **status** - the bit at ``credentialStatus.statusListIndex`` in the issuer's Bitstring Status
   List, whose own signature must verify by the same issuer's key set; from the trust list's copy
   ("as of <fetched>") or fetched online. A set bit is the verdict REVOKED.
8. **dates** - ``validFrom`` and the proof's ``created`` not in the future, ``validUntil`` not past.

:func:`verify_credential` never raises: malformed input becomes a failed check with a reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import didweb, limits, status_list
from . import proof as di
from .canon import CanonicalizationError
from .contexts import VC_V2, bundled
from .credential import subject_name
from .multikey import MultikeyError, multikey_to_public_key
from .trust import find

CLOCK_SKEW = timedelta(minutes=5)
EXIT_CODES = {"VALID": 0, "INVALID": 1, "REVOKED": 1, "DEMO": 3, "UNOFFICIAL": 4}
SOURCES = {"published": "VALID", "demo": "DEMO", "user": "UNOFFICIAL"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    credential: dict | None = None
    entry: dict | None = None          # the trust-list entry of the issuer
    source: str | None = None          # "published" | "demo" | "user"
    revoked: bool = False

    @property
    def ok(self) -> bool:
        """Every check passed (whatever list the issuer came from)."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def verdict(self) -> str:
        if self.ok and self.source in SOURCES:
            return SOURCES[self.source]
        failed = [c for c in self.checks if not c.ok]
        return "REVOKED" if self.revoked and [c.name for c in failed] == ["status"] else "INVALID"

    @property
    def valid(self) -> bool:
        """VALID: a published issuer, and every check passed."""
        return self.verdict == "VALID"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def summary(self) -> str:
        verdict = self.verdict
        if verdict == "INVALID":
            failed = [c for c in self.checks if not c.ok] or [Check("checks", False, "none ran")]
            return f"INVALID: {failed[0].name}: {failed[0].detail}"
        cred = self.credential
        issuer = self.entry.get("name") or self.entry["did"]
        text = (f"{subject_name(cred) or 'the holder'} earned "
                f"\"{cred['credentialSubject']['achievement']['name']}\" from {issuer}, "
                f"issued {cred['validFrom'][:10]}")
        if verdict == "REVOKED":
            return f"REVOKED: the issuer has revoked this credential ({text})"
        if verdict == "DEMO":
            return (f"DEMO: {text}\nsigned by the throwaway DEMO issuer {self.entry['did']} - "
                    "an example, not a real certificate.")
        if verdict == "UNOFFICIAL":
            return (f"UNOFFICIAL: {text}\nsigned by {self.entry['did']}, which only the list you "
                    "supplied (--trust) vouches for; it is not a published issuer of the course.")
        return f"VALID: {text}"

    def report(self) -> str:
        lines = [f"  [{'ok' if c.ok else 'FAIL':>4}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines + [self.summary()])


# --------------------------------------------------------------------------------- helpers
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


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _check_contexts(doc) -> None:
    ctx = _as_list(doc.get("@context"))
    if not ctx or ctx[0] != VC_V2:
        raise ValueError(f"the first @context must be {VC_V2} (a VC 2.0 credential)")
    unknown = [c for c in ctx if not isinstance(c, str) or c not in bundled()]
    if unknown:
        raise ValueError(f"unknown @context {unknown[0]!r}: only the bundled contexts are allowed")
    limits.check_no_nested_context(doc)


def _structure(cred) -> str:
    """Raise ValueError naming the first structural problem; return a description when fine."""
    if not isinstance(cred, dict):
        raise ValueError("a credential is a JSON object, this is a " + type(cred).__name__)
    _check_contexts(cred)
    types = _as_list(cred.get("type"))
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


def _read(data, what: str):
    """Untrusted bytes/text/object -> parsed JSON within the limits (InputError otherwise)."""
    if data is None:
        raise limits.InputError(f"no {what}")
    raw = data if isinstance(data, (str, bytes)) else limits.to_json(data)
    return limits.parse_json(raw)


def _get(fetch, url: str, what: str):
    """Fetch and parse ``url`` (online mode); ValueError with a reason on any failure."""
    try:
        return _read(fetch(url), f"{what} at {url}")
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot fetch the {what} from {url}: {exc}") from None


def _key(document: dict, did: str, vm: str, created: str) -> tuple[bytes, str]:
    """The public key of ``vm`` in ``did``'s document, if it may sign a proof made at ``created``.
    Returns (raw key, description); ValueError with the reason otherwise."""
    if not isinstance(document, dict) or document.get("id") != did:
        raise ValueError(f"the DID document is not {did}'s")
    methods = [m for m in _as_list(document.get("verificationMethod")) if isinstance(m, dict)]
    full = lambda i: did + i if isinstance(i, str) and i.startswith("#") else i  # noqa: E731
    method = next((m for m in methods if full(m.get("id")) == vm), None)
    assertion = [full(a if isinstance(a, str) else a.get("id") if isinstance(a, dict) else None)
                 for a in _as_list(document.get("assertionMethod"))]
    if method is None or vm not in assertion:
        keys = ", ".join(full(m.get("id")) or "?" for m in methods) or "none"
        raise ValueError(f"{vm} is not an assertion key of {did} (its keys: {keys})")
    if method.get("type") != "Multikey" or method.get("controller") != did:
        raise ValueError(f"{vm} is not a Multikey controlled by {did}")
    try:
        public_key = multikey_to_public_key(method.get("publicKeyMultibase"))
    except MultikeyError as exc:
        raise ValueError(f"{vm}: {exc}") from None
    if method.get("revoked"):
        retired = _parse_time(method["revoked"], f"{vm} retirement date")
        if _parse_time(created, "proof created") >= retired:
            raise ValueError(f"{vm} was retired on {method['revoked']}; a proof created "
                             f"{created} by it is refused")
        return public_key, f"{vm} (retired {method['revoked']}, proof made before)"
    return public_key, vm


def _signed_by(doc: dict, did: str, document: dict) -> str:
    """Check ``doc``'s proof against ``did``'s document; returns the key used (ValueError)."""
    doc = di.single_proof(doc)
    p = di.check_proof_shape(doc.get("proof"))
    if p["verificationMethod"].partition("#")[0] != did:
        raise ValueError(f"signed by {p['verificationMethod']}, not by a key of {did}")
    public_key, used = _key(document, did, p["verificationMethod"], p["created"])
    if not di.verify(doc, public_key):
        raise ValueError("its signature does not verify")
    return used


def _status(cred: dict, entry: dict, did: str, document: dict, fetch) -> tuple[bool, bool, str]:
    """(ok, revoked, detail) of the credential's revocation bit."""
    status = cred.get("credentialStatus")
    if not isinstance(status, dict) or status.get("type") != "BitstringStatusListEntry" \
            or status.get("statusPurpose") != "revocation":
        return False, False, ("no revocation status (credentialStatus with a "
                              "BitstringStatusListEntry for 'revocation'): cannot be checked")
    url, index = status.get("statusListCredential"), status.get("statusListIndex")
    base = str(entry.get("url", "")).rstrip("/") + "/"
    if not isinstance(url, str) or not url.startswith(base):
        return False, False, f"the status list {url!r} is not under the issuer's URL {base}"
    if not isinstance(index, str) or not index.isdigit() or len(index) > 9:
        return False, False, f"statusListIndex {index!r} is not a decimal number"
    if fetch is not None:
        listed = _get(fetch, url, "status list")
        as_of = f"fetched now from {url}"
    else:
        listed = (entry.get("statusLists") or {}).get(url)
        if listed is None:
            return False, False, (f"the trust list has no copy of the status list {url}; "
                                  "check online (--online)")
        listed = _read(listed, "status list")
        as_of = f"as of {entry.get('fetched', '?')} (the trust list's copy; --online for now)"
    if not isinstance(listed, dict):
        raise ValueError("the status list is not a JSON object")
    _check_contexts(listed)
    subject = listed.get("credentialSubject")
    issuer = listed.get("issuer")
    if "BitstringStatusListCredential" not in _as_list(listed.get("type")) \
            or listed.get("id") != url or not isinstance(subject, dict) \
            or subject.get("statusPurpose") != "revocation" \
            or (issuer.get("id") if isinstance(issuer, dict) else issuer) != did:
        raise ValueError(f"{url} is not {did}'s revocation status list")
    try:
        _signed_by(listed, did, document)
    except (ValueError, CanonicalizationError) as exc:
        raise ValueError(f"the status list {url} is not validly signed by {did}: {exc}") from None
    bits = status_list.decode(subject.get("encodedList"))
    if status_list.get_bit(bits, int(index)):
        return False, True, f"REVOKED: bit {index} of {url} is set ({as_of})"
    return True, False, f"not revoked: bit {index} of the signed list is clear, {as_of}"


# ------------------------------------------------------------------------------- verifying
def verify_credential(data, trusted, now: datetime | None = None, *, demo=(), extra=(),
                      fetch=None) -> Verification:
    """Run every check on ``data`` (JSON text, bytes or an already-parsed object).

    ``trusted``: the published trust-list entries (VALID); ``demo``: the demo issuer's (DEMO);
    ``extra``: entries the user supplied (UNOFFICIAL). ``fetch(url) -> bytes`` enables online
    checks (DID document and status list from the issuer's domain); None = offline.
    """
    v = Verification()
    now = now or datetime.now(timezone.utc)
    try:
        cred = _read(data, "credential")
        v.add("JSON", True, "parsed, within the input limits")
    except limits.InputError as exc:
        v.add("JSON", False, str(exc))
        return v
    try:
        v.add("structure", True, _structure(cred))
    except (ValueError, limits.InputError) as exc:
        v.add("structure", False, str(exc))
        return v
    v.credential = cred
    try:
        single = di.single_proof(cred)
        p = di.check_proof_shape(single.get("proof"))
        v.add("proof", True, f"{p['type']} / {p['cryptosuite']}, created {p['created']}")
    except di.ProofError as exc:
        v.add("proof", False, str(exc))
        return v
    did = cred["issuer"]["id"]
    vm = p["verificationMethod"]
    # 4. issuer: which list vouches for this DID (published first: it always wins)
    found = [(source, find(entries, did)) for source, entries in
             (("published", trusted), ("demo", demo), ("user", extra))]
    source, entry = next(((s, e) for s, e in found if e is not None), (None, None))
    if entry is None:
        v.add("issuer", False, f"{did} is not a published issuer of this course "
                               f"({len(trusted)} published); a self-made key proves nothing")
        return v
    if vm.partition("#")[0] != did:
        v.add("issuer", False, f"the proof's key {vm} does not belong to the credential's "
                               f"issuer {did}")
        return v
    document = entry.get("didDocument")
    try:
        if fetch is not None:
            document = _get(fetch, didweb.did_document_url(did), "DID document")
    except ValueError as exc:
        v.add("issuer", False, str(exc))
        return v
    v.entry, v.source = entry, source
    label = {"published": "published issuer", "demo": "the DEMO issuer (demo-issuers.json)",
             "user": "UNOFFICIAL: trusted only by the list you supplied"}[source]
    v.add("issuer", True, f"{label} \"{entry.get('name', did)}\" ({did})"
          + (", DID document fetched now" if fetch is not None else ""))
    # 5. the key, before any canonicalization
    try:
        public_key, used = _key(document, did, vm, p["created"])
        v.add("issuer key", True, used)
    except ValueError as exc:
        v.add("issuer key", False, str(exc))
        return v
    # 6. the signature
    try:
        ok = di.verify(single, public_key)
    except (CanonicalizationError, di.ProofError) as exc:
        v.add("signature", False, str(exc))
        return v
    if not v.add("signature", ok, "Ed25519 signature over the RDFC-1.0 canonical form verifies"
                 if ok else "Ed25519 signature does not match: the credential was changed after "
                 "signing, or signed by another key"):
        return v
    # 7. revocation status
    try:
        ok, v.revoked, detail = _status(cred, entry, did, document, fetch)
    except (ValueError, status_list.StatusListError) as exc:
        ok, detail = False, str(exc)
    v.add("status", ok, detail)
    # 8. dates
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
