"""An attacker's review of the certificates, one test per finding.

Each test states the attack and asserts the verifier's refusal *and its reason* (never a
wall-clock time: the refusals of oversized or crafted inputs happen before any JSON-LD work, which
the reason shows). Helpers (issuers, credentials, trust entries) come from test_certificates.py.
"""
from __future__ import annotations

import copy
import http.server
import json
import threading
from functools import partial

import pytest

from autograder.certificates import didweb, keys, limits, links, proof, publish, trust
from autograder.certificates.canon import CanonicalizationError, canonicalize
from autograder.certificates.credential import subject_name
from autograder.certificates.verifier import verify_credential
from autograder.cli import main

from .test_certificates import BASE, REPO, check, entry_of, failed, index_of, issue, make_issuer


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_issuer(tmp_path_factory.mktemp("course") / "issuer", name="inferlab")


@pytest.fixture(scope="module")
def published(course):
    return [entry_of(course)]


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    return make_issuer(tmp_path_factory.mktemp("attacker") / "issuer", "https://inferlab.example",
                       name="inferlab")


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def resign(issuer, cred, created=None):
    unsigned = {k: v for k, v in cred.items() if k != "proof"}
    return proof.sign(unsigned, issuer.private_key, issuer.verification_method,
                      created or cred["validFrom"])


# ----------------------------------------------------------------------------- trust
def test_self_made_key_naming_inferlab_is_not_valid(course, published, attacker):
    forged = issue(attacker, name="Eve")           # a perfect signature, issuer named "inferlab"
    result = check(forged, published)
    assert result.verdict == "INVALID" and failed(result) == {"issuer"}
    assert "not a published issuer" in result.report()
    # claiming the course's DID with the attacker's key: the course's DID document has no such key
    claimed = copy.deepcopy(forged)
    claimed["issuer"] = course.issuer_profile
    claimed = proof.sign({k: v for k, v in claimed.items() if k != "proof"},
                         attacker.private_key, course.verification_method, claimed["validFrom"])
    result = check(claimed, published)
    assert result.verdict == "INVALID" and failed(result) == {"signature"}


def test_local_issuer_profile_is_not_trusted_by_default(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INFERLAB_ISSUER_DIR", str(tmp_path / "issuer"))
    local = make_issuer(tmp_path / "issuer")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(issue(local)))
    code, out, _ = _cli(capsys, "verify", str(path))
    assert code == 1 and "INVALID" in out and "not a published issuer" in out


def test_user_trust_list_is_unofficial_and_published_data_wins(tmp_path, course, published,
                                                               attacker, capsys):
    own = issue(attacker)
    result = check(own, published, extra=[entry_of(attacker)])
    assert result.verdict == "UNOFFICIAL" and result.exit_code == 4 and result.ok
    # a user list claiming the course's DID with the attacker's key loses to the published entry
    fake = entry_of(attacker) | {"did": course.did}
    fake["didDocument"] = didweb.did_document(course.did, attacker.keys)
    claimed = proof.sign({k: v for k, v in own.items() if k not in ("proof", "issuer")}
                         | {"issuer": course.issuer_profile},
                         attacker.private_key, course.verification_method, own["validFrom"])
    alone = check(claimed, [], extra=[fake])
    assert alone.source == "user" and "signature" not in failed(alone)     # the fake key "works"
    result = check(claimed, published, extra=[fake])
    assert result.verdict == "INVALID" and result.source == "published"   # published wins
    assert failed(result) == {"signature"}
    # the CLI: exit 4
    trust.write([entry_of(attacker)], tmp_path)
    (tmp_path / "c.json").write_text(json.dumps(own))
    code, out, _ = _cli(capsys, "verify", str(tmp_path / "c.json"), "--trust",
                        str(tmp_path / trust.TRUST_JSON))
    assert code == 4 and "UNOFFICIAL" in out


def test_demo_credential_is_demo_exit_3_never_0(capsys):
    code, out, _ = _cli(capsys, "verify", str(REPO / "docs" / "demo-credential.json"))
    assert code == 3 and "DEMO:" in out and "VALID:" not in out
    demo = trust.load_trust_file(REPO / "docs" / "verify" / trust.DEMO_JSON)
    cred = (REPO / "docs" / "demo-credential.json").read_text()
    # even a list that names the demo issuer as "published" cannot come from the bundled data
    assert verify_credential(cred, [], demo=demo).exit_code == 3


# ---------------------------------------------------------------------------- status list
def test_revocation_and_tampered_or_unsigned_status_lists(tmp_path, attacker):
    issuer = make_issuer(tmp_path / "issuer")
    cred = issue(issuer)
    keys.revoke_index(issuer, index_of(cred))
    revoked = entry_of(issuer)
    assert check(cred, [revoked]).verdict == "REVOKED"
    # the holder "un-revokes" it by editing the cached list: its signature no longer verifies
    clean = keys.signed_status_list(make_issuer(tmp_path / "x", BASE))["credentialSubject"]
    tampered = copy.deepcopy(revoked)
    listed = tampered["statusLists"][issuer.status_list_url]
    listed["credentialSubject"]["encodedList"] = clean["encodedList"]
    result = check(cred, [tampered])
    assert result.verdict == "INVALID" and "not validly signed" in result.report()
    # ... or removes its proof, or signs it with another key
    del listed["proof"]
    assert "not validly signed" in check(cred, [tampered]).report()
    other = copy.deepcopy(revoked)
    other["statusLists"][issuer.status_list_url] = resign(
        attacker, listed, "2026-06-01T00:00:00Z")
    result = check(cred, [other])
    assert result.verdict == "INVALID" and "not validly signed" in result.report()
    # no copy of the list at all: not VALID, and the reason says to check online
    missing = revoked | {"statusLists": {}}
    assert "--online" in check(cred, [missing]).report()


def test_status_list_inflation_is_capped(course, published):
    from autograder.certificates import status_list

    bomb = status_list.encode(bytearray(50_000_000))            # 50 MB of zeros, ~50 KB packed
    with pytest.raises(status_list.StatusListError, match="inflates beyond"):
        status_list.decode(bomb)


# ------------------------------------------------------------------------------- keys
def test_retired_key_before_ok_after_refused(tmp_path):
    issuer = make_issuer(tmp_path / "issuer")
    before = issue(issuer, when="2026-03-01T00:00:00Z")
    after = issue(issuer, when="2026-05-01T00:00:00Z")
    keys.rotate(tmp_path / "issuer", "2026-04-01T00:00:00Z")
    rotated = keys.load_signing_issuer(tmp_path / "issuer")
    entry = entry_of(rotated)
    assert check(before, [entry]).valid
    result = check(after, [entry])
    assert result.verdict == "INVALID" and failed(result) == {"issuer key"}
    assert "was retired on 2026-04-01T00:00:00Z" in result.report()
    assert check(issue(rotated, when="2026-05-01T00:00:00Z"), [entry]).valid   # key-2 signs


def test_issuer_key_is_checked_before_the_signature(course, published):
    cred = issue(course)
    cred["proof"]["verificationMethod"] = course.did + "#key-7"
    result = check(cred, published)
    assert [c.name for c in result.checks][-1] == "issuer key"   # stopped: no signature check
    assert "is not an assertion key" in result.report()


# ----------------------------------------------------------------------- input limits
def clique(n: int) -> dict:
    """n blank nodes, each referring to every other: canonicalization's worst case."""
    nodes = [{"id": f"_:b{i}", "knows": [{"id": f"_:b{j}"} for j in range(n) if j != i]}
             for i in range(n)]
    return {"@context": ["https://www.w3.org/ns/credentials/v2", VOCAB],
            "type": "VerifiableCredential", "issuer": "did:web:x.org", "credentialSubject": nodes}


VOCAB = "https://example.org/vocab"
VOCAB_CONTEXT = {VOCAB: {"@context": {"@vocab": "https://example.org/terms#"}}}


def test_blank_node_clique_is_refused_before_canonicalization(course, published):
    small = clique(9)                       # passes the JSON limits, not the node limit
    with pytest.raises(CanonicalizationError, match="nodes after JSON-LD expansion"):
        canonicalize(small, VOCAB_CONTEXT)
    # as a credential signed "by the course" (any proofValue): refused at the JSON limits
    cred = issue(course)
    cred["credentialSubject"]["related"] = clique(14)["credentialSubject"]
    text = json.dumps(cred)
    assert len(text) < 8_000
    result = verify_credential(text, published)
    assert result.verdict == "INVALID" and failed(result) == {"JSON"}
    assert "JSON objects and arrays: more than the limit" in result.report()


def test_oversize_credential_is_refused_by_size(course, published):
    cred = issue(course)
    cred["credentialSubject"]["achievement"]["description"] = "x" * 670_000
    result = verify_credential(json.dumps(cred), published)
    assert failed(result) == {"JSON"} and "larger than the 64000-byte limit" in result.report()
    deep = "[" * 5000 + "]" * 5000
    assert "levels deep" in verify_credential(deep, published).report()


def test_inflation_bomb_link_is_refused(capsys):
    bomb = links.pack({"x": " " * 20_000_000})                   # 20 MB that packs to ~20 KB
    with pytest.raises(links.LinkError, match="inflates to more than"):
        links.unpack_text(bomb)
    code, _, err = _cli(capsys, "verify", f"https://x.example/verify/#vc={bomb}")
    assert code == 2 and "inflates to more than" in err


def test_duplicate_keys_and_nan_are_refused(course, published):
    cred = issue(course)
    text = json.dumps(cred).replace('"identityHash": "Ada Lovelace"',
                                    '"identityHash": "Ada Lovelace", "identityHash": "Eve"')
    result = verify_credential(text, published)
    assert failed(result) == {"JSON"} and "'identityHash' appears twice" in result.report()
    text = json.dumps(cred).replace('"hashed": false', '"hashed": NaN')
    result = verify_credential(text, published)
    assert failed(result) == {"JSON"} and "NaN and Infinity are refused" in result.report()
    assert "NaN" in verify_credential(cred | {"x": float("inf")}, published).report() or \
        "Infinity" in verify_credential(cred | {"x": float("inf")}, published).report()


# --------------------------------------------------------------------- unexpected shapes
@pytest.mark.parametrize("identifier", [
    {"@set": [{"type": "IdentityObject", "identityType": "name", "identityHash": "Ada",
               "hashed": False}]},
    {"type": "IdentityObject", "identityType": "name", "identityHash": "Ada", "hashed": False},
    5, "Ada", [None], {"@set": "x"}, None,
])
def test_odd_identifier_shapes_never_crash(course, published, identifier, tmp_path, capsys):
    cred = issue(course)
    cred["credentialSubject"]["identifier"] = identifier
    cred = resign(course, cred) if isinstance(identifier, dict) else cred
    assert subject_name(cred) in ("Ada", None)
    result = check(cred, published)
    result.report()
    if isinstance(identifier, dict) and "@set" in identifier and identifier["@set"] != "x":
        assert result.valid and "VALID: Ada earned" in result.report()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cred))
    code, out, err = _cli(capsys, "verify", str(path))
    assert code in (1, 2)


def test_one_element_proof_array_accepted_two_refused(course, published):
    cred = issue(course)
    one = cred | {"proof": [cred["proof"]]}
    assert check(one, published).valid
    two = cred | {"proof": [cred["proof"], cred["proof"]]}
    result = check(two, published)
    assert failed(result) == {"proof"} and "exactly one is accepted" in result.report()


# ------------------------------------------------------------------- did:web resolution
def test_did_web_http_only_on_loopback():
    assert didweb.did_document_url("did:web:localhost%3A8000").startswith("http://localhost")
    assert didweb.did_document_url("did:web:example.org").startswith("https://example.org")
    for url in ("http://example.org/.well-known/did.json", "file:///etc/passwd",
                "http://10.0.0.1/status/1", "ftp://127.0.0.1/x"):
        with pytest.raises(didweb.DidWebError, match="refusing to fetch"):
            didweb.fetch(url)


@pytest.fixture
def served(tmp_path):
    """A loopback web server for an issuer's published site (did.json, status/1)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_online_verification_over_loopback(served):
    tmp_path, base = served
    issuer = make_issuer(tmp_path / "issuer", base)
    cred = issue(issuer)
    stale = entry_of(issuer)                        # the trust list's copy: not revoked
    keys.revoke_index(issuer, index_of(cred))
    publish.write_site(issuer, tmp_path / "site", keys.signed_status_list(issuer))
    assert check(cred, [stale]).valid                                   # offline: as of then
    online = check(cred, [stale], fetch=didweb.fetch)
    assert online.verdict == "REVOKED" and "fetched now" in online.report()
    # a response larger than the cap is refused
    (tmp_path / "site" / "big").write_bytes(b" " * 2_000_000)
    with pytest.raises(didweb.DidWebError, match="larger than"):
        didweb.fetch(f"{base}/big")
    assert limits.MAX_BYTES < didweb.MAX_FETCH_BYTES
