"""Signed certificates: the eddsa-rdfc-2022 proof, tampering, trust, revocation, keys, bad input.

Fast unit tests (no gradebook, no browser): each builds credentials with throwaway keys in a
temporary folder. The completion rule and ``certify`` are in test_completion*.py, the browser
page in test_verify_page.py.
"""
from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from autograder.certificates import (
    didweb,
    keys,
    links,
    multikey,
    proof,
    registry,
    status_list,
    trust,
)
from autograder.certificates.canon import CanonicalizationError, canonicalize
from autograder.certificates.credential import build_credential
from autograder.certificates.pdf import write_certificate_pdf
from autograder.certificates.verifier import verify_credential
from autograder.cli import main

REPO = Path(__file__).resolve().parent.parent
BASE = "https://certs.example.org"


# ------------------------------------------------------------------ helpers (also used by
# test_certificate_attacks.py): an issuer, a credential, the issuer's trust-list entry
def make_issuer(directory, base_url=BASE, name="Test Course", demo=False):
    return keys.init(directory, base_url=base_url, name=name, demo=demo)


def issue(issuer, name="Ada Lovelace", when="2026-01-15T10:00:00Z", status=True, **fields):
    entry = (status_list.status_entry(issuer.status_list_url, keys.allocate_status_index(issuer))
             if status else None)
    unsigned = build_credential(name, issuer.issuer_profile, when, "Every notebook passed.",
                                status=entry)
    unsigned.update(fields)
    return proof.sign(unsigned, issuer.private_key, issuer.verification_method, when)


def entry_of(issuer, when=None):
    """The issuer's trust-list entry, with its status list signed now."""
    return trust.entry_for(issuer, {issuer.status_list_url: keys.signed_status_list(issuer, when)})


def index_of(cred):
    return int(cred["credentialStatus"]["statusListIndex"])


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return make_issuer(tmp_path_factory.mktemp("issuer") / "issuer")


@pytest.fixture(scope="module")
def other_issuer(tmp_path_factory):
    return make_issuer(tmp_path_factory.mktemp("other") / "issuer", "https://other.example",
                       "Someone Else")


@pytest.fixture(scope="module")
def credential(issuer):
    return issue(issuer)


@pytest.fixture(scope="module")
def entry(issuer, credential):
    return entry_of(issuer)


def check(cred, trusted, **kw):
    return verify_credential(json.dumps(cred), trusted, **kw)


def failed(result):
    return {c.name for c in result.checks if not c.ok}


# ------------------------------------------------------------------ the cryptosuite itself
# The W3C "Data Integrity EdDSA Cryptosuites v1.0" recommendation, appendix B.1 (eddsa-rdfc-2022):
# the signed example credential and its public key. Verifying the spec's own proofValue checks our
# canonicalization, hashing, proof-configuration and multibase handling against the standard.
SPEC_CONTEXTS = {"https://www.w3.org/ns/credentials/examples/v2":
                 {"@context": {"@vocab": "https://www.w3.org/ns/credentials/examples#"}}}
SPEC_KEY = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
SPEC_SIGNED = {
    "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
    "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
    "type": ["VerifiableCredential", "AlumniCredential"],
    "name": "Alumni Credential",
    "description": "A minimum viable example of an Alumni Credential.",
    "issuer": "https://vc.example/issuers/5678",
    "validFrom": "2023-01-01T00:00:00Z",
    "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"},
    "proof": {
        "type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022",
        "created": "2023-02-24T23:36:38Z",
        "verificationMethod": f"did:key:{SPEC_KEY}#{SPEC_KEY}",
        "proofPurpose": "assertionMethod",
        "proofValue": "z2YwC8z3ap7yx1nZYCg4L3j3ApHsF8kgPdSb5xoS1VR7vPG3F561B52hYnQF9iseabecm3ijx4K1FBTQsCZahKZme",  # noqa: E501
    },
}
# The spec's intermediate value: SHA-256(canonical proof config) || SHA-256(canonical document).
SPEC_HASH_DATA = ("bea7b7acfbad0126b135104024a5f1733e705108f42d59668b05c0c50004c6b0"
                  "517744132ae165a5349155bef0bb0cf2258fff99dfe1dbd914b938d775a36017")


def test_w3c_test_vector_verifies():
    public_key = multikey.multikey_to_public_key(SPEC_KEY)
    assert proof.verify(SPEC_SIGNED, public_key, SPEC_CONTEXTS)
    unsecured = {k: v for k, v in SPEC_SIGNED.items() if k != "proof"}
    options = {k: v for k, v in SPEC_SIGNED["proof"].items() if k != "proofValue"}
    assert proof.hash_data(unsecured, options, SPEC_CONTEXTS).hex() == SPEC_HASH_DATA
    tampered = copy.deepcopy(SPEC_SIGNED)
    tampered["credentialSubject"]["alumniOf"] = "The School of Forgery"
    assert not proof.verify(tampered, public_key, SPEC_CONTEXTS)


def test_base58_and_multikey_round_trip():
    for data in (b"", b"\0", b"\0\0\x01", bytes(range(256)), b"\xff" * 64):
        assert multikey.b58decode(multikey.b58encode(data)) == data
    raw = bytes(range(32))
    mk = multikey.public_key_to_multikey(raw)
    assert mk.startswith("z6Mk") and multikey.multikey_to_public_key(mk) == raw
    for bad in ("zzz", "z0OIl", "abc", None):
        with pytest.raises(multikey.MultikeyError):
            multikey.multikey_to_public_key(bad)


def test_did_web_mapping():
    assert didweb.did_from_url("https://certs.example.org") == "did:web:certs.example.org"
    assert didweb.did_from_url("https://Certs.Example.org/") == "did:web:certs.example.org"
    assert didweb.did_from_url("http://127.0.0.1:8000") == "did:web:127.0.0.1%3A8000"
    assert didweb.did_from_url("https://x.org/inferlab") == "did:web:x.org:inferlab"
    assert didweb.did_document_url("did:web:certs.example.org") == \
        "https://certs.example.org/.well-known/did.json"
    assert didweb.did_document_url("did:web:x.org:inferlab") == "https://x.org/inferlab/did.json"
    assert didweb.did_document_url("did:web:127.0.0.1%3A8000") == \
        "http://127.0.0.1:8000/.well-known/did.json"
    for url in ("http://certs.example.org", "ftp://x.org", "https://x.org/?q=1", "not a url"):
        with pytest.raises(didweb.DidWebError):
            didweb.did_from_url(url)
    doc = didweb.did_document("did:web:x.org", [
        {"id": "key-1", "publicKeyMultibase": "z6Mk1", "created": "2026-01-01T00:00:00Z",
         "retired": "2027-01-01T00:00:00Z"},
        {"id": "key-2", "publicKeyMultibase": "z6Mk2", "created": "2027-01-01T00:00:00Z",
         "retired": None}])
    assert doc["assertionMethod"] == ["did:web:x.org#key-1", "did:web:x.org#key-2"]
    assert doc["verificationMethod"][0]["revoked"] == "2027-01-01T00:00:00Z"
    assert "revoked" not in doc["verificationMethod"][1]


def test_status_list_bits_and_encoding():
    bits = status_list.new_bits()
    assert len(bits) * 8 == status_list.LIST_BITS == 131072
    status_list.set_bit(bits, 0)
    status_list.set_bit(bits, 9)
    assert bits[0] == 0x80 and bits[1] == 0x40          # most significant bit first
    decoded = status_list.decode(status_list.encode(bits))
    assert status_list.get_bit(decoded, 9) and not status_list.get_bit(decoded, 10)
    assert status_list.encode(bits).startswith("u") and "=" not in status_list.encode(bits)
    used = {status_list.free_index(set()) for _ in range(20)}
    assert len(used) > 15                                # random, not sequential
    with pytest.raises(status_list.StatusListError):
        status_list.get_bit(bits, status_list.LIST_BITS)


def test_canonicalization_refuses_what_it_would_not_sign(credential):
    doc = {k: v for k, v in credential.items() if k != "proof"}
    assert "<https://schema.org/name>" in canonicalize(doc)
    with pytest.raises(CanonicalizationError, match="not defined"):
        canonicalize(dict(doc, favouriteColour="green"))      # undefined term would be dropped
    with pytest.raises(CanonicalizationError, match="context"):
        canonicalize(dict(doc, **{"@context": doc["@context"] + ["https://evil.example/ctx"]}))


# --------------------------------------------------------------- verification and tampering
def test_valid_credential_verifies(credential, entry):
    result = check(credential, [entry])
    assert result.valid and result.verdict == "VALID" and result.exit_code == 0, result.report()
    assert [c.name for c in result.checks] == ["JSON", "structure", "proof", "issuer",
                                               "issuer key", "signature", "status", "dates"]
    assert "VALID: Ada Lovelace" in result.report()
    assert "as of" in result.report()          # offline: the status list copy's date is stated


def _set(path):
    def change(cred, value):
        node = cred
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


TAMPERING = {
    "name": (_set(["credentialSubject", "identifier", 0, "identityHash"]), "Eve Mallory"),
    "date": (_set(["validFrom"]), "2025-01-15T10:00:00Z"),
    "awarded date": (_set(["awardedDate"]), "2025-01-15T10:00:00Z"),
    "achievement": (_set(["credentialSubject", "achievement", "name"]), "Rocket Science"),
    "criteria": (_set(["credentialSubject", "achievement", "criteria", "narrative"]), "None."),
    "issuer name": (_set(["issuer", "name"]), "Famous University"),
    "issuer url": (_set(["issuer", "url"]), "https://famous.example"),
    "credential id": (_set(["id"]), "urn:uuid:00000000-0000-4000-8000-000000000000"),
    "proof created": (_set(["proof", "created"]), "2026-01-15T10:00:01Z"),
    "status index": (_set(["credentialStatus", "statusListIndex"]), "7"),
}


@pytest.mark.parametrize("field", sorted(TAMPERING))
def test_changing_any_field_breaks_the_signature(credential, entry, field):
    change, value = TAMPERING[field]
    tampered = copy.deepcopy(credential)
    change(tampered, value)
    result = check(tampered, [entry])
    assert result.verdict == "INVALID" and "signature" in failed(result), result.report()


def test_changing_the_issuer_or_proof_value_fails(credential, entry, other_issuer):
    tampered = copy.deepcopy(credential)
    tampered["issuer"]["id"] = other_issuer.did
    result = check(tampered, [entry, entry_of(other_issuer)])
    assert not result.valid and failed(result) == {"issuer"}, result.report()

    pv = credential["proof"]["proofValue"]
    for new in (pv[:-1] + ("2" if pv[-1] != "2" else "3"), pv[:40], pv + "1", "z", "not-multibase"):
        tampered = copy.deepcopy(credential)
        tampered["proof"]["proofValue"] = new
        result = check(tampered, [entry])
        assert not result.valid and "signature" in failed(result), (new, result.report())


def test_another_key_is_not_trusted(credential, issuer, entry, other_issuer):
    # 1. A forger signs the credential with their own did:web: a correct signature by an issuer
    #    that is not published.
    forged = issue(other_issuer)
    result = check(forged, [entry])
    assert result.verdict == "INVALID" and failed(result) == {"issuer"}, result.report()
    assert "is not a published issuer" in result.report()
    # 2. ... or signs with their key but claims the course's key: the signature fails.
    claimed = proof.sign({k: v for k, v in credential.items() if k != "proof"},
                         other_issuer.private_key, issuer.verification_method,
                         credential["validFrom"])
    result = check(claimed, [entry])
    assert not result.valid and failed(result) == {"signature"}, result.report()
    # 3. With no trusted issuers at all, nothing verifies.
    assert not check(credential, []).valid


def test_revoked_credential_fails(tmp_path):
    issuer = make_issuer(tmp_path / "issuer")
    cred, kept = issue(issuer), issue(issuer, name="Grace Hopper")
    assert keys.revoke_index(issuer, index_of(cred)) and not keys.revoke_index(issuer,
                                                                               index_of(cred))
    published = entry_of(issuer)
    result = check(cred, [published])
    assert result.verdict == "REVOKED" and result.exit_code == 1 and failed(result) == {"status"}
    assert "REVOKED" in result.report() and "reason" not in json.dumps(published)
    assert check(kept, [published]).valid


def test_dates_are_checked(issuer, entry):
    future = issue(issuer, when="2099-01-01T00:00:00Z")
    result = check(future, [entry])
    assert failed(result) == {"dates"}
    expiring = issue(issuer, when="2026-01-01T00:00:00Z", validUntil="2026-06-01T00:00:00Z")
    assert check(expiring, [entry]).valid is False
    assert verify_credential(json.dumps(expiring), [entry],
                             now=datetime(2026, 3, 1, tzinfo=timezone.utc)).valid


BAD_INPUT = {
    "malformed JSON": ('{"@context": [', "JSON", "not valid JSON"),
    "not an object": ("[1, 2]", "structure", "JSON object"),
    "empty object": ("{}", "structure", "first @context"),
    "missing proof": (None, "proof", "no proof object"),
    "unknown cryptosuite": (None, "proof", "unknown cryptosuite 'ecdsa-rdfc-2019'"),
    "other proof type": (None, "proof", "unsupported proof type"),
    "unknown context": (None, "structure", "unknown @context"),
    "did:key key": (None, "issuer", "does not belong to the credential's issuer"),
    "unknown key id": (None, "issuer key", "is not an assertion key"),
    "no status": (None, "status", "no revocation status"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_clear_failure(credential, issuer, entry, case):
    text, check_name, message = BAD_INPUT[case]
    if text is None:
        cred = copy.deepcopy(credential)
        if case == "missing proof":
            del cred["proof"]
        elif case == "unknown cryptosuite":
            cred["proof"]["cryptosuite"] = "ecdsa-rdfc-2019"
        elif case == "other proof type":
            cred["proof"]["type"] = "Ed25519Signature2020"
        elif case == "unknown context":
            cred["@context"].append("https://example.com/my-context.jsonld")
        elif case == "did:key key":
            cred["proof"]["verificationMethod"] = "did:key:z6MkrJVn#z6MkrJVn"
        elif case == "unknown key id":
            cred["proof"]["verificationMethod"] = issuer.did + "#key-9"
        elif case == "no status":
            del cred["credentialStatus"]
            cred = proof.sign({k: v for k, v in cred.items() if k != "proof"},
                              issuer.private_key, issuer.verification_method, cred["validFrom"])
        text = json.dumps(cred)
    result = verify_credential(text, [entry])
    assert not result.valid
    bad = [c for c in result.checks if not c.ok][0]
    assert bad.name == check_name and message in bad.detail, result.report()


# ------------------------------------------------------------------------------ keys
def test_keys_init_permissions_and_no_secret_leaves(tmp_path):
    issuer = make_issuer(tmp_path / "issuer")
    assert issuer.did == "did:web:certs.example.org"
    assert issuer.verification_method == "did:web:certs.example.org#key-1"
    key_file = tmp_path / "issuer" / "key-1.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "issuer").stat().st_mode) == 0o700
    pem = key_file.read_text()
    assert "PRIVATE KEY" in pem
    secret_b64 = "".join(pem.strip().splitlines()[1:-1])
    profile_text = (tmp_path / "issuer" / keys.PROFILE_FILE).read_text()
    assert "PRIVATE" not in profile_text and secret_b64 not in profile_text
    assert "private_key" not in repr(issuer) and secret_b64 not in repr(issuer)
    cred = json.dumps(issue(issuer))
    assert secret_b64 not in cred and secret_b64 not in json.dumps(entry_of(issuer))
    # it loads back and matches its profile
    assert keys.load_signing_issuer(tmp_path / "issuer").private_key is not None
    # a second init never overwrites the key
    with pytest.raises(keys.IssuerKeyError, match="already exists"):
        make_issuer(tmp_path / "issuer")
    with pytest.raises(keys.IssuerKeyError, match="already exists"):
        keys.generate_key(tmp_path / "issuer", "key-1")


def test_keys_rotate(tmp_path):
    issuer = make_issuer(tmp_path / "issuer")
    rotated = keys.rotate(tmp_path / "issuer", "2030-01-01T00:00:00Z")
    assert rotated.verification_method.endswith("#key-2")
    assert stat.S_IMODE((tmp_path / "issuer" / "key-2.pem").stat().st_mode) == 0o600
    doc = keys.load_profile(tmp_path / "issuer").did_document()
    assert [m["id"].split("#")[1] for m in doc["verificationMethod"]] == ["key-1", "key-2"]
    assert doc["verificationMethod"][0]["revoked"] == "2030-01-01T00:00:00Z"
    assert keys.load_signing_issuer(tmp_path / "issuer").verification_method == \
        rotated.verification_method
    assert issuer.did == rotated.did
    with pytest.raises(keys.IssuerKeyError, match="retire-at"):
        keys.rotate(tmp_path / "issuer", "next tuesday")


def test_keys_refuse_a_repository_and_loose_permissions(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    with pytest.raises(keys.IssuerKeyError, match="outside any repository"):
        make_issuer(REPO / "build" / "never-created-issuer")
    assert not (REPO / "build" / "never-created-issuer").exists()
    make_issuer(tmp_path / "issuer")
    os.chmod(tmp_path / "issuer" / "key-1.pem", 0o644)
    with pytest.raises(keys.IssuerKeyError, match="readable by others"):
        keys.load_signing_issuer(tmp_path / "issuer")


def test_default_issuer_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLAB_ISSUER_DIR", str(tmp_path / "x"))
    assert keys.default_issuer_dir() == tmp_path / "x"
    monkeypatch.delenv("INFERLAB_ISSUER_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert keys.default_issuer_dir() == tmp_path / "cfg" / "inferlab" / "issuer"


def test_no_private_key_is_committed():
    """Nothing tracked or about to be committed in the repository holds a PEM private key."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    pem = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    for name in listed.stdout.splitlines():
        path = REPO / name
        assert path.suffix not in {".pem", ".key"}, f"{name} looks like a key file"
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert not pem.search(path.read_text(errors="ignore")), f"{name} contains a private key"


# ---------------------------------------------------------------------- links and PDF
def test_links_short_url_for_linkedin_and_offline_link(credential):
    sid = links.short_id()
    assert len(sid) == 12 and re.fullmatch(r"[A-Za-z0-9_-]{12}", sid) and sid != links.short_id()
    short = links.short_url(BASE + "/", sid)
    assert short == f"{BASE}/c/{sid}"
    url = urlparse(links.linkedin_url(credential, short))
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.netloc == "www.linkedin.com" and url.path == "/profile/add"
    assert q["startTask"] == "CERTIFICATION_NAME"
    assert q["name"] == credential["name"] and q["organizationName"] == "Test Course"
    assert (q["issueYear"], q["issueMonth"]) == ("2026", "1")
    assert q["certId"] == credential["id"] and q["certUrl"] == short
    # the self-verifying link, for offline use, still carries the whole credential
    link = links.verification_url("https://example.org/verify/", credential)
    assert link.startswith("https://example.org/verify/#vc=")
    assert links.unpack(link.split("#vc=")[1]) == credential


def test_pdf_certificate(tmp_path, credential):
    short = f"{BASE}/c/AbCdEfGhIjKl"
    path = write_certificate_pdf(tmp_path / "c.pdf", credential, short, demo=True)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000
    # reportlab is deterministic here (invariant mode): the same credential gives the same file
    again = write_certificate_pdf(tmp_path / "d.pdf", credential, short, demo=True)
    assert again.read_bytes() == data


def test_unicode_name_round_trips(issuer, tmp_path):
    cred = issue(issuer, name="Zoë Łukasiewicz-Ōtomo 李")
    assert check(cred, [entry_of(issuer)]).valid
    write_certificate_pdf(tmp_path / "u.pdf", cred, f"{BASE}/c/x")


def test_repository_trust_lists():
    """The published list holds only real issuers (none is a demo); the demo list holds only the
    demo issuer, and the repository's example credential verifies as DEMO, never VALID."""
    verify_dir = REPO / "docs" / "verify"
    published = trust.load_trust_file(verify_dir / trust.TRUST_JSON)
    demo = trust.load_trust_file(verify_dir / trust.DEMO_JSON)
    assert all(".invalid" not in e["did"] for e in published)
    assert [e["did"] for e in demo] == ["did:web:demo.inferlab.invalid"]
    example = (REPO / "docs" / "demo-credential.json").read_text()
    assert verify_credential(example, published, demo=demo).verdict == "DEMO"
    for name, variable in ((trust.TRUST_JS, "INFERLAB_TRUSTED_ISSUERS"),
                           (trust.DEMO_JS, "INFERLAB_DEMO_ISSUERS")):
        script = (verify_dir / name).read_text()
        data = json.loads(script[script.index("=") + 1:].strip().rstrip(";"))
        assert f"window.{variable} = " in script
        assert data == json.loads((verify_dir / name.replace(".js", ".json")).read_text())


# ------------------------------------------------------------------------------- CLI
def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_cli_keys_publish_verify_revoke(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INFERLAB_ISSUER_DIR", str(tmp_path / "issuer"))
    assert _cli(capsys, "keys", "init", "--base-url", BASE, "--name", "CLI Course")[0] == 0
    issuer = keys.load_signing_issuer()
    cred = issue(issuer)
    registry.record(tmp_path / "gradebook.db", "ada", cred)
    cred_path = tmp_path / "credential.json"
    cred_path.write_text(json.dumps(cred))
    code, out, _ = _cli(capsys, "keys", "show")
    assert code == 0 and "did:web:certs.example.org#key-1" in out
    # publish: the files to host and the trust list (no private key anywhere)
    code, out, _ = _cli(capsys, "keys", "publish", "--out", str(tmp_path / "pub"))
    assert code == 0 and f"{BASE}/.well-known/did.json" in out
    site = tmp_path / "pub" / "site"
    did_doc = json.loads((site / ".well-known" / "did.json").read_text())
    assert did_doc == issuer.did_document()
    status = json.loads((site / "status" / "1").read_text())
    assert status["id"] == f"{BASE}/status/1" and status["proof"]["verificationMethod"] == \
        issuer.verification_method
    assert trust.load_trust_file(site / "trust.json")[0]["did"] == issuer.did
    trusted = tmp_path / "pub" / "trusted-issuers.json"
    for f in (trusted, site / "status" / "1", site / ".well-known" / "did.json"):
        assert "PRIVATE" not in f.read_text()
    script = (tmp_path / "pub" / "trusted-issuers.js").read_text()
    assert "window.INFERLAB_TRUSTED_ISSUERS" in script
    # the local issuer folder is never trusted silently; a list given with --trust: UNOFFICIAL
    code, out, _ = _cli(capsys, "verify", str(cred_path))
    assert code == 1 and "not a published issuer" in out
    code, out, _ = _cli(capsys, "verify", str(cred_path), "--trust", str(trusted))
    assert code == 4 and "UNOFFICIAL" in out and "[  ok] signature" in out
    link = links.verification_url("https://x.example/verify/", cred)
    assert _cli(capsys, "verify", link, "--trust", str(trusted))[0] == 4
    # revoke sets the bit and re-signs the list; after publishing, the list says REVOKED
    code, out, _ = _cli(capsys, "revoke", cred["id"], "--reason", "private note",
                        "--root", str(tmp_path))
    assert code == 0 and "revoked" in out and "no reason is published" in out
    assert registry.by_id(tmp_path / "gradebook.db", cred["id"]).revoked_at
    resigned = (tmp_path / "issuer" / "site" / "status" / "1").read_text()
    assert "private note" not in resigned
    assert _cli(capsys, "verify", str(cred_path), "--trust", str(trusted))[0] == 4  # old copy
    _cli(capsys, "keys", "publish", "--out", str(tmp_path / "pub"))
    code, out, _ = _cli(capsys, "verify", str(cred_path), "--trust", str(trusted))
    assert code == 1 and "REVOKED" in out
    assert "private note" not in trusted.read_text()
    # an unknown credential id cannot be revoked
    code, _, err = _cli(capsys, "revoke", "urn:uuid:nope", "--root", str(tmp_path))
    assert code == 2 and "was not issued" in err


@pytest.mark.parametrize("content, message", [
    ('{"broken": ', "not valid JSON"),
    ('{"@context": ["https://www.w3.org/ns/credentials/v2"]}', "type does not include"),
    (None, "no proof object"),
    ("cryptosuite", "unknown cryptosuite"),
])
def test_cli_bad_credentials_exit_non_zero_without_traceback(tmp_path, capsys, credential,
                                                             content, message):
    if content is None:
        content = json.dumps({k: v for k, v in credential.items() if k != "proof"})
    elif content == "cryptosuite":
        other_suite = credential["proof"] | {"cryptosuite": "bbs-2023"}
        content = json.dumps(credential | {"proof": other_suite})
    path = tmp_path / "c.json"
    path.write_text(content)
    code, out, err = _cli(capsys, "verify", str(path))
    assert code == 1 and message in out and "INVALID" in out


@pytest.mark.parametrize("argv, message", [
    (["verify", "/no/such/file.json"], "no such file"),
    (["verify", "https://x.example/#vc=%%%"], "damaged"),
    (["verify", __file__, "--trust", "/no/such/trust.json"], "cannot read trusted issuers"),
    (["keys", "show", "--dir", "/no/such/dir"], "no issuer profile"),
    (["keys", "init", "--base-url", "http://example.org", "--dir", "/no/such/dir"],
     "only allowed for 127.0.0.1"),
    (["keys", "init"], "--base-url"),
    (["keys", "rotate", "--dir", "/no/such/dir"], "no issuer profile"),
    (["certify", "--issuer-dir", "/no/such/dir"], "no issuer profile"),
    (["verify", __file__, "--issuer-dir", "/tmp"], "unrecognized arguments"),
    (["progress", "someone", "--course-root", "/no/such/course"], "no assignments found"),
    (["frobnicate"], ""),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and message in err


def test_cli_binary_or_unreadable_file(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    code, out, err = _cli(capsys, "verify", str(path))
    assert code == 2 and "not a text" in err


def test_module_entry_point_never_prints_a_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    # the autograder is used from the repository (it is not in the installed package)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "autograder", "verify", str(bad),
                             "--trust", str(tmp_path / "missing.json")],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error:")
