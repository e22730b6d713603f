"""The service as a certificate issuer: its did:web identity, keys, status list and credentials.

* **Identity.** The issuer is ``did:web:<the service's domain>``; its DID document (served at
  ``/.well-known/did.json``) lists the public keys, so a credential verifies only if the domain
  that issued it still vouches for the key.
* **Keys.** Private keys are 0600 files in the issuer folder (outside any repository); the database
  holds the public part and the dates. Rotation adds ``key-N+1`` and retires the old key: the DID
  document keeps it with its retirement date, so what it signed before still verifies and nothing
  it "signs" afterwards does.
* **Revocation** is one bit per credential in a signed Bitstring Status List at ``/status/1``.
  Indexes are drawn at random, and nothing but the bit is published: no reason, no date.
* **Issuing** happens when a student's graded submissions meet the completion rule
  (``progress.py``); it is recorded in the audit log, like revocations and rotations.
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

from sqlalchemy import select

from autograder.certificates import didweb, keys, proof, status_list
from autograder.certificates.credential import build_credential
from autograder.certificates.links import short_id as new_short_id

from .models import AuditEvent, Credential, IssuerKey, StatusList, Student, utcnow


def iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def audit(session, actor: str, action: str, subject: str, detail: str = "") -> None:
    session.add(AuditEvent(at=utcnow(), actor=actor, action=action, subject=subject, detail=detail))


class ServiceIssuer:
    def __init__(self, base_url: str, name: str, key_dir):
        self.base_url, self.name, self.key_dir = base_url, name, key_dir
        self.did = didweb.did_from_url(base_url)
        self.status_url = f"{base_url}/status/1"

    @property
    def profile(self) -> dict:
        return {"id": self.did, "type": ["Profile"], "name": self.name, "url": self.base_url}

    # --------------------------------------------------------------------------------- keys
    def ensure_ready(self, session) -> None:
        """A first key and an empty status list, on the service's first start."""
        if session.scalar(select(IssuerKey).limit(1)) is None:
            self._new_key(session, "key-1", actor="service")
        existing = session.get(StatusList, 1)
        if existing is not None and json.loads(existing.signed)["issuer"] != self.did:
            from .config import ConfigError
            raise ConfigError(
                f"this data folder belongs to the issuer {json.loads(existing.signed)['issuer']}, "
                f"not {self.did}: start with the base URL it was created with (its certificates "
                "name it), or use another data folder")
        if existing is None:
            session.add(StatusList(id=1, bits=bytes(status_list.new_bits()), updated_at=utcnow()))
            session.flush()
            self._sign_status_list(session)

    def _new_key(self, session, key_id: str, actor: str) -> IssuerKey:
        _, multikey = keys.generate_key(self.key_dir, key_id)
        row = IssuerKey(id=key_id, public_key=multikey, created_at=utcnow())
        session.add(row)
        audit(session, actor, "key-created", f"{self.did}#{key_id}")
        session.flush()
        return row

    def keys(self, session) -> list[IssuerKey]:
        rows = session.scalars(select(IssuerKey)).all()
        return sorted(rows, key=lambda k: int(k.id.split("-")[1]))

    def active_key(self, session) -> IssuerKey:
        active = [k for k in self.keys(session) if k.retired_at is None]
        if not active:
            raise RuntimeError("the issuer has no active key: rotate to make one")
        return active[-1]

    def rotate(self, session, actor: str) -> IssuerKey:
        """A new signing key; the current one is retired now (its old signatures stay valid)."""
        current = self.keys(session)
        # Retired one second from now: its last proofs (dated in whole seconds, up to this one)
        # stay before the retirement, and from now on only the new key signs.
        now = utcnow() + timedelta(seconds=1)
        for k in current:
            if k.retired_at is None:
                k.retired_at = now
                audit(session, actor, "key-retired", f"{self.did}#{k.id}", f"retired {iso(now)}")
        number = int(current[-1].id.split("-")[1]) + 1 if current else 1
        row = self._new_key(session, f"key-{number}", actor)
        self._sign_status_list(session)      # published data always signed by the active key
        return row

    def did_document(self, session) -> dict:
        return didweb.did_document(self.did, [
            {"id": k.id, "publicKeyMultibase": k.public_key, "created": iso(k.created_at),
             "retired": iso(k.retired_at) if k.retired_at else None} for k in self.keys(session)])

    def _sign(self, session, document: dict, when: str) -> dict:
        key = self.active_key(session)
        private = keys.load_private_key(self.key_dir, key.id)
        return proof.sign(document, private, f"{self.did}#{key.id}", when)

    # ---------------------------------------------------------------------------- status list
    def _sign_status_list(self, session) -> None:
        row = session.get(StatusList, 1)
        now = iso(utcnow())
        unsigned = status_list.status_list_credential(self.status_url, self.did, row.bits, now)
        row.signed = json.dumps(self._sign(session, unsigned, now))
        row.updated_at = utcnow()

    def status_list_credential(self, session) -> dict:
        return json.loads(session.get(StatusList, 1).signed)

    def revoke(self, session, credential: Credential, actor: str) -> None:
        if credential.revoked_at is not None:
            return
        row = session.get(StatusList, 1)
        bits = bytearray(row.bits)
        status_list.set_bit(bits, credential.status_index)
        row.bits = bytes(bits)
        credential.revoked_at = utcnow()
        audit(session, actor, "revoked", credential.id, f"student {credential.student_id}")
        session.flush()
        self._sign_status_list(session)

    # ---------------------------------------------------------------------------- credentials
    def issue(self, session, student: Student, criteria: str) -> Credential:
        used = set(session.scalars(select(Credential.status_index)).all())
        index = status_list.free_index(used)
        now = iso(utcnow())
        unsigned = build_credential(student.name, self.profile, now, criteria,
                                    credential_id=f"urn:uuid:{uuid.uuid4()}",
                                    status=status_list.status_entry(self.status_url, index))
        signed = self._sign(session, unsigned, now)
        row = Credential(id=signed["id"], short_id=new_short_id(), student_id=student.id,
                         status_index=index, document=json.dumps(signed), issued_at=utcnow())
        session.add(row)
        audit(session, "service", "issued", row.id, f"student {student.id} ({student.email})")
        session.flush()
        return row

    def trust_entry(self, session) -> dict:
        """This issuer as an entry of a trust list (what offline verifiers bundle)."""
        return {"did": self.did, "name": self.name, "url": self.base_url,
                "didDocument": self.did_document(session),
                "statusLists": {self.status_url: self.status_list_credential(session)},
                "fetched": iso(utcnow())}

    def public_url(self, credential: Credential) -> str:
        return f"{self.base_url}/c/{credential.short_id}"
