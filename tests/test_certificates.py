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

from autograder.certificates import keys, links, multikey, proof
from autograder.certificates.canon import CanonicalizationError, canonicalize
from autograder.certificates.credential import build_credential
from autograder.certificates.pdf import write_certificate_pdf
from autograder.certificates.verifier import verify_credential
from autograder.cli import main

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return keys.init(tmp_path_factory.mktemp("issuer") / "issuer", name="Test Course")


@pytest.fixture(scope="module")
def other_issuer(tmp_path_factory):
    return keys.init(tmp_path_factory.mktemp("other") / "issuer", name="Someone Else")


def issue(issuer, name="Ada Lovelace", when="2026-01-15T10:00:00Z"):
    unsigned = build_credential(name, issuer.profile, when, "Every notebook passed.")
    return proof.sign(unsigned, issuer.private_key, issuer.verification_method, when)


@pytest.fixture(scope="module")
def credential(issuer):
    return issue(issuer)


def check(cred, trusted):
    return verify_credential(json.dumps(cred), trusted)


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
    did, key = multikey.public_key_from_verification_method(f"did:key:{mk}#{mk}")
    assert did == f"did:key:{mk}" and key == raw
    for bad in ("did:web:example.com#key-1", f"did:key:{mk}#other", "did:key:zzz#zzz", "z0OIl"):
        with pytest.raises(multikey.MultikeyError):
            multikey.public_key_from_verification_method(bad)


def test_canonicalization_refuses_what_it_would_not_sign(credential):
    doc = {k: v for k, v in credential.items() if k != "proof"}
    assert "<https://schema.org/name>" in canonicalize(doc)
    with pytest.raises(CanonicalizationError, match="not defined"):
        canonicalize(dict(doc, favouriteColour="green"))      # undefined term would be dropped
    with pytest.raises(CanonicalizationError, match="context"):
        canonicalize(dict(doc, **{"@context": doc["@context"] + ["https://evil.example/ctx"]}))


# --------------------------------------------------------------- verification and tampering
def test_valid_credential_verifies(credential, issuer):
    result = check(credential, [issuer.profile])
    assert result.valid, result.report()
    assert [c.name for c in result.checks] == ["JSON", "structure", "proof", "issuer key",
                                               "signature", "revocation", "dates"]
    assert "VALID: Ada Lovelace" in result.report()


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
}


@pytest.mark.parametrize("field", sorted(TAMPERING))
def test_changing_any_field_breaks_the_signature(credential, issuer, field):
    change, value = TAMPERING[field]
    tampered = copy.deepcopy(credential)
    change(tampered, value)
    result = check(tampered, [issuer.profile])
    assert not result.valid and "signature" in failed(result), result.report()


def test_changing_the_issuer_or_proof_value_fails(credential, issuer, other_issuer):
    tampered = copy.deepcopy(credential)
    tampered["issuer"]["id"] = other_issuer.profile["issuer"]["id"]
    result = check(tampered, [issuer.profile, other_issuer.profile])
    assert not result.valid and {"issuer key", "signature"} <= failed(result)

    pv = credential["proof"]["proofValue"]
    for new in (pv[:-1] + ("2" if pv[-1] != "2" else "3"), pv[:40], pv + "1", "z", "not-multibase"):
        tampered = copy.deepcopy(credential)
        tampered["proof"]["proofValue"] = new
        result = check(tampered, [issuer.profile])
        assert not result.valid and "signature" in failed(result), (new, result.report())


def test_another_key_is_not_trusted(credential, issuer, other_issuer):
    # 1. A forger re-signs the whole credential with their own key: a correct signature by a key
    #    that is not the course's.
    forged = issue(other_issuer)
    forged["issuer"] = credential["issuer"] | {"id": other_issuer.profile["issuer"]["id"]}
    forged = proof.sign({k: v for k, v in forged.items() if k != "proof"}, other_issuer.private_key,
                        other_issuer.verification_method, forged["validFrom"])
    result = check(forged, [issuer.profile])
    assert not result.valid and failed(result) == {"issuer key"}, result.report()
    assert "is not a published key" in result.report()
    # 2. ... or signs with their key but claims the course's key: the signature fails.
    claimed = proof.sign({k: v for k, v in credential.items() if k != "proof"},
                         other_issuer.private_key, issuer.verification_method,
                         credential["validFrom"])
    result = check(claimed, [issuer.profile])
    assert not result.valid and failed(result) == {"signature"}, result.report()
    # 3. With no trusted keys at all, nothing verifies.
    assert not check(credential, []).valid


def test_revoked_credential_fails(credential, issuer):
    profile = copy.deepcopy(issuer.profile)
    profile["revoked"] = [{"id": credential["id"], "revokedAt": "2026-02-01T00:00:00Z",
                           "reason": "plagiarism"}]
    result = check(credential, [profile])
    assert not result.valid and failed(result) == {"revocation"}
    assert "REVOKED on 2026-02-01T00:00:00Z: plagiarism" in result.report()


def test_dates_are_checked(issuer):
    future = issue(issuer, when="2099-01-01T00:00:00Z")
    result = check(future, [issuer.profile])
    assert failed(result) == {"dates"}
    expiring = build_credential("Ada", issuer.profile, "2026-01-01T00:00:00Z", "x")
    expiring["validUntil"] = "2026-06-01T00:00:00Z"
    expiring = proof.sign(expiring, issuer.private_key, issuer.verification_method,
                          "2026-01-01T00:00:00Z")
    assert check(expiring, [issuer.profile]).valid is False
    assert verify_credential(json.dumps(expiring), [issuer.profile],
                             now=datetime(2026, 3, 1, tzinfo=timezone.utc)).valid


BAD_INPUT = {
    "malformed JSON": ('{"@context": [', "JSON", "not valid JSON"),
    "not an object": ("[1, 2]", "structure", "JSON object"),
    "empty object": ("{}", "structure", "first @context"),
    "missing proof": (None, "proof", "no proof object"),
    "unknown cryptosuite": (None, "proof", "unknown cryptosuite 'ecdsa-rdfc-2019'"),
    "other proof type": (None, "proof", "unsupported proof type"),
    "unknown context": (None, "structure", "unknown @context"),
    "did:web key": (None, "issuer key", "not a did:key"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_clear_failure(credential, issuer, case):
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
        elif case == "did:web key":
            cred["proof"]["verificationMethod"] = "did:web:example.com#key-1"
        text = json.dumps(cred)
    result = verify_credential(text, [issuer.profile])
    assert not result.valid
    bad = [c for c in result.checks if not c.ok][0]
    assert bad.name == check_name and message in bad.detail, result.report()


# ------------------------------------------------------------------------------ keys
def test_keys_init_permissions_and_no_secret_leaves(tmp_path):
    issuer = keys.init(tmp_path / "issuer")
    key_file = tmp_path / "issuer" / keys.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "issuer").stat().st_mode) == 0o700
    pem = key_file.read_text()
    assert "PRIVATE KEY" in pem
    secret_b64 = "".join(pem.strip().splitlines()[1:-1])
    profile_text = (tmp_path / "issuer" / keys.PROFILE_FILE).read_text()
    assert "PRIVATE" not in profile_text and secret_b64 not in profile_text
    assert "private_key" not in repr(issuer) and secret_b64 not in repr(issuer)
    cred = json.dumps(issue(issuer))
    assert secret_b64 not in cred
    # it loads back and matches its profile
    assert keys.load_signing_issuer(tmp_path / "issuer").private_key is not None
    # a second init never overwrites the key
    with pytest.raises(keys.IssuerKeyError, match="already exists"):
        keys.init(tmp_path / "issuer")


def test_keys_refuse_a_repository_and_loose_permissions(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    with pytest.raises(keys.IssuerKeyError, match="outside any repository"):
        keys.init(REPO / "build" / "never-created-issuer")
    assert not (REPO / "build" / "never-created-issuer").exists()
    keys.init(tmp_path / "issuer")
    os.chmod(tmp_path / "issuer" / keys.KEY_FILE, 0o644)
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
def test_links_carry_the_credential_and_linkedin_fields(credential):
    link = links.verification_url("https://example.org/verify/", credential)
    assert link.startswith("https://example.org/verify/#vc=")
    assert links.unpack(link.split("#vc=")[1]) == credential
    url = urlparse(links.linkedin_url(credential, link))
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.netloc == "www.linkedin.com" and url.path == "/profile/add"
    assert q["startTask"] == "CERTIFICATION_NAME"
    assert q["name"] == credential["name"] and q["organizationName"] == "Test Course"
    assert (q["issueYear"], q["issueMonth"]) == ("2026", "1")
    assert q["certId"] == credential["id"] and q["certUrl"] == link


def test_pdf_certificate(tmp_path, credential):
    path = write_certificate_pdf(tmp_path / "c.pdf", credential, "https://example.org/v/#vc=abc",
                                 demo=True)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 5000
    # reportlab is deterministic here (invariant mode): the same credential gives the same file
    again = write_certificate_pdf(tmp_path / "d.pdf", credential, "https://example.org/v/#vc=abc",
                                  demo=True)
    assert again.read_bytes() == data


def test_unicode_name_round_trips(issuer, tmp_path):
    cred = issue(issuer, name="Zoë Łukasiewicz-Ōtomo 李")
    assert check(cred, [issuer.profile]).valid
    write_certificate_pdf(tmp_path / "u.pdf", cred, "https://example.org/v/#vc=x")


# ------------------------------------------------------------------------------- CLI
def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_cli_verify_revoke_and_publish(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INFERLAB_ISSUER_DIR", str(tmp_path / "issuer"))
    assert _cli(capsys, "keys", "init", "--name", "CLI Course")[0] == 0
    issuer = keys.load_signing_issuer()
    cred_path = tmp_path / "credential.json"
    cred = issue(issuer)
    cred_path.write_text(json.dumps(cred))
    code, out, _ = _cli(capsys, "verify", str(cred_path), "--issuer-dir", str(tmp_path / "issuer"))
    assert code == 0 and "VALID" in out and "[  ok] signature" in out
    link = links.verification_url("https://x.example/verify/", cred)
    assert _cli(capsys, "verify", link, "--issuer-dir", str(tmp_path / "issuer"))[0] == 0

    # publish -> the trust list verifies it too (and holds no private key)
    assert _cli(capsys, "keys", "publish", "--to", str(tmp_path / "site"))[0] == 0
    published = (tmp_path / "site" / "trusted-issuers.json").read_text()
    assert "PRIVATE" not in published and issuer.profile["issuer"]["id"] in published
    script = (tmp_path / "site" / "trusted-issuers.js").read_text()
    assert "window.INFERLAB_TRUSTED_ISSUERS" in script
    trusted = str(tmp_path / "site" / "trusted-issuers.json")
    assert _cli(capsys, "verify", str(cred_path), "--trust", trusted)[0] == 0

    # revoke -> invalid from the issuer folder, and from the re-published list
    code, out, _ = _cli(capsys, "revoke", cred["id"], "--reason", "test",
                        "--course-root", str(tmp_path))
    assert code == 0 and "revoked" in out
    code, out, _ = _cli(capsys, "verify", str(cred_path), "--issuer-dir", str(tmp_path / "issuer"))
    assert code == 1 and "REVOKED" in out
    _cli(capsys, "keys", "publish", "--to", str(tmp_path / "site"))
    assert _cli(capsys, "verify", str(cred_path), "--trust", trusted)[0] == 1


@pytest.mark.parametrize("content, message", [
    ('{"broken": ', "not valid JSON"),
    ('{"@context": ["https://www.w3.org/ns/credentials/v2"]}', "type does not include"),
    (None, "no proof object"),
    ("cryptosuite", "unknown cryptosuite"),
])
def test_cli_bad_credentials_exit_non_zero_without_traceback(tmp_path, capsys, credential, issuer,
                                                             content, message):
    if content is None:
        content = json.dumps({k: v for k, v in credential.items() if k != "proof"})
    elif content == "cryptosuite":
        other_suite = credential["proof"] | {"cryptosuite": "bbs-2023"}
        content = json.dumps(credential | {"proof": other_suite})
    path = tmp_path / "c.json"
    path.write_text(content)
    code, out, err = _cli(capsys, "verify", str(path), "--issuer-dir", str(issuer.directory))
    assert code == 1 and message in out and "INVALID" in out


@pytest.mark.parametrize("argv, message", [
    (["verify", "/no/such/file.json"], "no such file"),
    (["verify", "https://x.example/#vc=%%%"], "damaged"),
    (["verify", __file__, "--trust", "/no/such/trust.json"], "cannot read trusted issuers"),
    (["keys", "show", "--dir", "/no/such/dir"], "no issuer profile"),
    (["certify", "--issuer-dir", "/no/such/dir"], "no issuer profile"),
    (["progress", "someone", "--course-root", "/no/such/course"], "no assignments found"),
    (["frobnicate"], ""),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and message in err


def test_cli_binary_or_unreadable_file(tmp_path, capsys, issuer):
    path = tmp_path / "c.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    code, out, err = _cli(capsys, "verify", str(path), "--issuer-dir", str(issuer.directory))
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
