"""The static verification page (docs/verify/) in real headless Chromium.

The page is copied, with trust lists made here, into a temporary folder and opened from file://
- the hardest case for a static page (no server at all). Every network request is intercepted and
counted: from file:// the page must make none. For the online part a local HTTP server on
127.0.0.1 plays the issuer's domain (``/.well-known/did.json``, ``/status/1``) and also serves the
page at ``/verify/``, as the course service does; there the page checks online by itself.

Checked: valid, tampered, wrong key, a self-made did:web naming the course, an uploaded issuer
(UNOFFICIAL; the published issuer wins), the demo issuer (DEMO), revocation through the status
list (cached "as of", and online), a retired key, inputs refused before any JSON-LD work (blank-
node clique, too many nodes, oversize, a #vc= inflation bomb, duplicate keys), odd shapes, a proof
array of one; that the bundle carries exactly the Python package's JSON-LD contexts; that jsonld.js
(in the browser) and pyld (in Python) produce the same canonical N-Quads; and that the committed
page shows the committed demo credential as DEMO.

Needs Chromium from the system's packages (`make browser`): skipped when missing, a failure in CI.
"""
from __future__ import annotations

import base64
import copy
import functools
import json
import os
import shutil
import threading
import zlib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autograder.certificates import didweb, keys, links, proof, status_list, trust, verifier
from autograder.certificates.canon import canonicalize
from autograder.certificates.contexts import bundled
from autograder.certificates.credential import build_credential

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "verify"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ISSUED = "2026-03-01T09:30:00Z"
RETIRED = "2026-06-01T00:00:00Z"      # key-1 of the course is retired then, key-2 signs after
FETCHED = "2026-05-01T00:00:00Z"      # when the published trust list's copies were taken

pytestmark = [pytest.mark.browser]


# ------------------------------------------------------------------------------ the issuers
class _Handler(SimpleHTTPRequestHandler):
    """Static files, with CORS (the page opened from disk may check online) and no log."""

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *args):
        pass


def _issue(issuer, name="Grace Hopper", when=ISSUED, *, key=None, method=None, status=True,
           **changes):
    """A credential by ``issuer`` (its current key unless ``key``/``method`` are given)."""
    entry = None
    if status:
        entry = status_list.status_entry(issuer.status_list_url,
                                         keys.allocate_status_index(issuer))
    unsigned = build_credential(name, issuer.issuer_profile, when, "Every graded notebook passed.",
                                status=entry)
    unsigned.update(changes)
    return proof.sign(unsigned, key or issuer.private_key, method or issuer.verification_method,
                      when)


def _index(credential) -> int:
    return int(credential["credentialStatus"]["statusListIndex"])


def _copy_page(site: Path):
    site.mkdir(parents=True)
    shutil.copy(PAGE / "index.html", site)
    shutil.copy(PAGE / "verify.js", site)
    shutil.copytree(PAGE / "vendor", site / "vendor")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The course's issuer (served on 127.0.0.1), a stranger, a demo issuer, their credentials,
    a copy of the page with its trust lists (file://) and the issuer's domain (http://)."""
    base = tmp_path_factory.mktemp("page")
    root = base / "domain"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"

    course = keys.init(base / "course", base_url=origin, name="Page Test Course")
    stranger = keys.init(base / "stranger", base_url="https://certs.stranger.example",
                         name="Page Test Course")                 # same name, another domain
    demo = keys.init(base / "demo", base_url="https://demo.page-test.invalid", demo=True)
    w = {"course": course, "stranger": stranger, "demo": demo, "origin": origin}
    w["valid"] = _issue(course)
    w["revoked"] = _issue(course, name="Revoked Person")
    w["late"] = _issue(course, name="Revoked Later")              # revoked after FETCHED
    w["unlisted"] = _issue(course, name="No Status", status=False)
    w["demo_credential"] = _issue(demo, name="Demo Student")
    w["stranger_credential"] = _issue(stranger)
    old_key = course.private_key
    keys.revoke_index(course, _index(w["revoked"]))
    course = keys.rotate(base / "course", retire_at=RETIRED)
    w["course"] = course
    w["after_rotation"] = _issue(course, name="Ada Lovelace", when="2026-07-01T10:00:00Z")
    w["retired_key"] = _issue(course, name="Forged Later", when="2026-07-01T10:00:00Z",
                              key=old_key, method=f"{course.did}#key-1")
    cached = {course.status_list_url: keys.signed_status_list(course, FETCHED)}
    keys.revoke_index(course, _index(w["late"]))
    online = keys.signed_status_list(course, "2026-07-02T00:00:00Z")

    (root / ".well-known").mkdir()
    (root / ".well-known" / "did.json").write_text(json.dumps(course.did_document()))
    (root / "status").mkdir()
    (root / "status" / "1").write_text(json.dumps(online))

    site = base / "site"
    _copy_page(site)
    trust.write([trust.entry_for(course, cached, FETCHED)], site)
    demo_lists = {demo.status_list_url: keys.signed_status_list(demo, ISSUED)}
    trust.write([trust.entry_for(demo, demo_lists, ISSUED)], site, trust.DEMO_JSON, trust.DEMO_JS)
    shutil.copytree(site, root / "verify")
    w["site"] = site
    w["stranger_list"] = base / "stranger-trust.json"
    stranger_lists = {stranger.status_list_url: keys.signed_status_list(stranger, ISSUED)}
    w["stranger_list"].write_text(json.dumps(trust.document(
        [trust.entry_for(stranger, stranger_lists, ISSUED)])))
    yield w
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: `make browser` should have installed it")
        pytest.skip("Chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page that records every network request and every script error. Requests to
    ``allow`` (an origin) go through; any other non-file request is aborted."""

    def __init__(self, browser, url, allow=None):
        self.page = browser.new_page()
        self.network, self.errors = [], []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

        def route(r):
            url = r.request.url
            if url.startswith("file://"):
                r.continue_()
                return
            self.network.append(url)
            if allow and url.startswith(allow + "/"):
                r.continue_()
            else:
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=15000)

    def verify(self, credential, **options) -> dict:
        text = credential if isinstance(credential, str) else json.dumps(credential)
        return self.page.evaluate("([t, o]) => inferlabVerify.verifyCredential(t, o)",
                                  [text, options])

    def close(self):
        self.page.close()


@pytest.fixture(scope="module")
def page(browser, world):
    p = Page(browser, (world["site"] / "index.html").as_uri())
    yield p
    assert p.network == [], f"the page tried to use the network: {p.network}"
    assert p.errors == [], p.errors
    p.close()


def failed(result):
    return [c["name"] for c in result["checks"] if not c["ok"]]


def detail(result, name):
    return next(c["detail"] for c in result["checks"] if c["name"] == name)


# ------------------------------------------------------------------------------- checks
def test_valid_credential(page, world):
    r = page.verify(world["valid"])
    assert r["verdict"] == "VALID" and r["valid"], r
    assert [c["name"] for c in r["checks"]] == ["JSON", "structure", "proof", "issuer",
                                                "issuer key", "signature", "status", "dates"]
    assert r["summary"].startswith('Grace Hopper earned "LLM Inference Optimization"')
    assert f"not revoked (signed status list, as of {FETCHED}" in detail(r, "status")


def test_new_key_after_rotation_is_valid(page, world):
    r = page.verify(world["after_rotation"])
    assert r["verdict"] == "VALID", r
    assert "#key-2" in detail(r, "issuer key")


TAMPER = {
    "name": lambda c: c["credentialSubject"]["identifier"][0].update(identityHash="Mallory"),
    "date": lambda c: c.update(validFrom="2026-02-01T09:30:00Z"),
    "achievement": lambda c: c["credentialSubject"]["achievement"].update(name="Astrophysics"),
    "issuer": lambda c: c["issuer"].update(name="Famous University"),
    "status index": lambda c: c["credentialStatus"].update(statusListIndex="7"),
    "proof value": lambda c: c["proof"].update(proofValue=c["proof"]["proofValue"][:-2] + "11"),
}


@pytest.mark.parametrize("field", sorted(TAMPER))
def test_tampered_credential_is_invalid(page, world, field):
    tampered = copy.deepcopy(world["valid"])
    TAMPER[field](tampered)
    r = page.verify(tampered)
    assert r["verdict"] == "INVALID" and failed(r) == ["signature"], r


def test_wrong_key(page, world):
    course, stranger = world["course"], world["stranger"]
    # a correct signature by a stranger's own did:web issuer, named like the course
    r = page.verify(world["stranger_credential"])
    assert r["verdict"] == "INVALID" and failed(r) == ["issuer"], r
    assert "is not a published issuer" in r["summary"]
    # the course's DID and key named, signed by the stranger: the signature fails
    unsigned = {k: v for k, v in world["valid"].items() if k != "proof"}
    claimed = proof.sign(unsigned, stranger.private_key, course.verification_method, ISSUED)
    r = page.verify(claimed)
    assert r["verdict"] == "INVALID" and failed(r) == ["signature"], r
    # the course's DID, but a key of another DID
    other = proof.sign(unsigned, stranger.private_key, stranger.verification_method, ISSUED)
    r = page.verify(other)
    assert failed(r) == ["issuer key"] and "is not a key of the issuer" in r["summary"], r


def test_self_made_did_web_naming_the_course_is_invalid(page, world, tmp_path):
    impostor = keys.init(tmp_path / "impostor", base_url="https://inferlab-course.example",
                         name=world["course"].name)
    r = page.verify(_issue(impostor))
    assert r["verdict"] == "INVALID" and failed(r) == ["issuer"], r
    assert "is not a published issuer" in r["summary"]


def test_revoked_from_the_cached_status_list(page, world):
    r = page.verify(world["revoked"])
    assert r["verdict"] == "REVOKED" and failed(r) == ["status"], r
    assert "REVOKED" in r["summary"] and f"as of {FETCHED}" in r["summary"]
    # revoked after the trust list was made: offline, the cached list still says not revoked
    r = page.verify(world["late"])
    assert r["verdict"] == "VALID" and f"as of {FETCHED}" in detail(r, "status"), r


def test_unchecked_status_is_not_valid(page, world):
    r = page.verify(world["unlisted"])           # no credentialStatus at all
    assert r["verdict"] == "INVALID" and failed(r) == ["status"], r
    assert detail(r, "status").startswith("not checked")


def test_status_list_elsewhere_is_refused(page, world):
    course = world["course"]
    entry = status_list.status_entry("https://elsewhere.example/status/1", 5)
    cred = _issue(course, status=False, credentialStatus=entry)
    r = page.verify(cred)
    assert r["verdict"] == "INVALID" and failed(r) == ["status"], r
    assert "not on the issuer's domain" in r["summary"]


def test_retired_key(page, world):
    r = page.verify(world["retired_key"])
    assert r["verdict"] == "INVALID" and failed(r) == ["issuer key"], r
    assert f"retired on {RETIRED}" in r["summary"]
    # proofs made by key-1 before its retirement stay valid
    assert page.verify(world["valid"])["verdict"] == "VALID"


def test_demo_issuer_is_never_valid(page, world):
    r = page.verify(world["demo_credential"])
    assert r["verdict"] == "DEMO" and not r["valid"] and failed(r) == [], r
    p = page.page
    p.fill("#credential", json.dumps(world["demo_credential"]))
    p.click("#verify")
    p.wait_for_selector("#result[data-verdict=DEMO]")
    assert p.inner_text("#result .banner").startswith("DEMO")
    assert "VALID" not in p.inner_text("#result .banner").replace("INVALID", "")


def test_page_and_python_verifier_agree(page, world):
    """Offline, the page and `python -m autograder verify` give each credential the same verdict."""
    published = trust.load_trust_file(world["site"] / trust.TRUST_JSON)
    demo = trust.load_trust_file(world["site"] / trust.DEMO_JSON)
    names = ["valid", "revoked", "late", "unlisted", "demo_credential", "stranger_credential",
             "after_rotation", "retired_key"]
    page_verdicts = {n: page.verify(world[n])["verdict"] for n in names}
    python_verdicts = {n: verifier.verify_credential(json.dumps(world[n]), published,
                                                     demo=demo).verdict for n in names}
    assert page_verdicts == python_verdicts
    assert set(page_verdicts.values()) == {"VALID", "REVOKED", "DEMO", "INVALID"}


# ---------------------------------------------------------------------- refused inputs
def _refused(r, reason):
    assert r["verdict"] == "ERROR" and failed(r) == ["JSON"] and reason in r["summary"], r


def _clique(base, n=7):
    """A few KB where n blank nodes each refer to all the others (hard to canonicalize)."""
    cred = {k: v for k, v in copy.deepcopy(base).items() if k != "proof"}
    cred["credentialSubject"]["achievement"]["related"] = [
        {"id": f"_:b{i}", "type": ["Achievement"],
         "related": [{"id": f"_:b{j}"} for j in range(n) if j != i]} for i in range(n)]
    cred["proof"] = base["proof"]
    return cred


def test_blank_node_clique_is_refused(page, world):
    text = json.dumps(_clique(world["valid"]))
    assert len(text) < 4000
    _refused(page.verify(text), "blank node label")


def test_too_many_nodes_is_refused(page, world):
    cred = copy.deepcopy(world["valid"])
    cred["credentialSubject"]["achievement"]["related"] = [{"type": "Achievement"}] * 45
    _refused(page.verify(cred), "more than the limit of 40")


def test_too_many_objects_and_too_deep_are_refused(page, world):
    cred = copy.deepcopy(world["valid"])
    cred["credentialSubject"]["achievement"]["related"] = [[{}]] * 60
    _refused(page.verify(cred), "more than 100 JSON objects and arrays: refused")
    deep = copy.deepcopy(world["valid"])
    deep["credentialSubject"]["achievement"]["criteria"] = json.loads("[" * 30 + "]" * 30)
    _refused(page.verify(deep), "nested deeper than 24 levels")


def test_oversize_credential_is_refused(page, world):
    cred = copy.deepcopy(world["valid"])
    cred["credentialSubject"]["achievement"]["description"] = "x" * 670_000
    _refused(page.verify(cred), "larger than the limit of 64000 bytes")


def test_duplicate_key_is_refused(page, world):
    text = json.dumps(world["valid"])
    twice = text.replace('"identityHash": "Grace Hopper"',
                         '"identityHash": "Grace Hopper", "identityHash": "Mallory"')
    assert twice != text
    _refused(page.verify(twice), 'duplicate key "identityHash"')
    escaped = text.replace('"validFrom": ',
                           '"validFrom": "2020-01-01T00:00:00Z", "valid\\u0046rom": ')
    _refused(page.verify(escaped), 'duplicate key "validFrom"')


def test_embedded_context_is_refused(page, world):
    cred = copy.deepcopy(world["valid"])
    cred["credentialSubject"]["@context"] = {"name": "https://evil.example/name"}
    _refused(page.verify(cred), "embedded @context")


def _deflated_link(megabytes: int) -> str:
    """A #vc= payload that inflates to ``megabytes`` MB of spaces."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b" " * (1 << 20)
    packed = b"".join(deflate.compress(chunk) for _ in range(megabytes)) + deflate.flush()
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


@pytest.mark.parametrize("megabytes, reason", [
    (70, "the credential in the link is larger than 64000 bytes"),   # a 91 KB link
    (200, "the link is longer than 100000 characters"),              # a 273 KB link
])
def test_inflation_bomb_link_is_refused(browser, world, megabytes, reason):
    link = _deflated_link(megabytes)
    p = Page(browser, (world["site"] / "index.html").as_uri() + "#vc=" + link)
    p.page.wait_for_selector("#result[data-verdict=ERROR]", timeout=30000)
    assert reason in p.page.inner_text("#result")
    assert p.network == [] and p.errors == []
    p.close()


# ------------------------------------------------------------------------- odd shapes
def test_identifier_as_set_is_a_failed_check(page, world):
    course = world["course"]
    unsigned = {k: v for k, v in world["after_rotation"].items() if k != "proof"}
    unsigned = copy.deepcopy(unsigned)
    subject = unsigned["credentialSubject"]
    subject["identifier"] = {"@set": subject["identifier"]}
    cred = proof.sign(unsigned, course.private_key, course.verification_method,
                      "2026-07-01T10:00:00Z")
    r = page.verify(cred)
    assert r["verdict"] == "INVALID" and failed(r) == ["structure"], r
    assert "identifier must be a list" in r["summary"]


def test_proof_array_of_one(page, world):
    cred = copy.deepcopy(world["valid"])
    cred["proof"] = [cred["proof"]]
    assert page.verify(cred)["verdict"] == "VALID"
    cred["proof"] = cred["proof"] * 2
    r = page.verify(cred)
    assert failed(r) == ["proof"] and "exactly one" in r["summary"], r


@pytest.mark.parametrize("mutate, check, message", [
    (lambda c: "{not json", "JSON", "not valid JSON"),
    (lambda c: "[1, NaN]", "JSON", "not valid JSON"),
    (lambda c: {k: v for k, v in c.items() if k != "proof"}, "proof", "no proof object"),
    (lambda c: c | {"proof": c["proof"] | {"cryptosuite": "ecdsa-rdfc-2019"}},
     "proof", "unknown cryptosuite"),
    (lambda c: c | {"@context": c["@context"] + ["https://evil.example/c"]},
     "structure", "unknown @context"),
    (lambda c: c | {"issuer": "did:web:x.example"}, "structure", "Profile object"),
    (lambda c: c | {"credentialStatus": {"@set": []}}, "structure", "BitstringStatusListEntry"),
    (lambda c: c | {"favouriteColour": "green"}, "signature", "favouriteColour"),
])
def test_bad_input(page, world, mutate, check, message):
    r = page.verify(mutate(copy.deepcopy(world["valid"])))
    assert not r["valid"] and failed(r)[0] == check and message in r["summary"], r


# ------------------------------------------------------------ uploaded issuers: UNOFFICIAL
def test_uploaded_issuer_is_unofficial_and_published_wins(browser, world, tmp_path):
    p = Page(browser, (world["site"] / "index.html").as_uri())
    stranger, course = world["stranger"], world["course"]
    # a list naming the course's DID with the stranger's keys, and the stranger's own entry
    hijack = trust.entry_for(stranger, {}, ISSUED) | {"did": course.did}
    hijack["didDocument"] = stranger.did_document() | {"id": course.did}
    uploaded = json.loads(world["stranger_list"].read_text())
    uploaded["issuers"].append(hijack)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "inferlab-trusted-issuers/2", "issuers": [{"did": 1}]}')
    p.page.set_input_files("#extra-issuer", str(garbage))
    p.page.wait_for_selector("#extra-note:not(:empty)", state="attached")
    assert p.page.text_content("#extra-note").startswith("Not an issuer list")
    assert p.verify(world["stranger_credential"])["verdict"] == "INVALID"
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(uploaded))
    p.page.set_input_files("#extra-issuer", str(path))
    p.page.wait_for_selector("#extra-note:has-text('UNOFFICIAL')", state="attached")
    note = p.page.text_content("#extra-note")
    assert "Also trusting, as UNOFFICIAL" in note and "Ignored (already published" in note

    r = p.verify(world["stranger_credential"])
    assert r["verdict"] == "UNOFFICIAL" and not r["valid"] and failed(r) == [], r
    p.page.fill("#credential", json.dumps(world["stranger_credential"]))
    p.page.click("#verify")
    p.page.wait_for_selector("#result[data-verdict=UNOFFICIAL]")
    assert "NOT the published issuer" in p.page.inner_text("#result .banner")
    # signed by the stranger's key under the course's DID: the published DID document is used
    unsigned = {k: v for k, v in world["valid"].items() if k != "proof"}
    forged = proof.sign(unsigned, stranger.private_key, f"{course.did}#key-1", ISSUED)
    r = p.verify(forged)
    assert r["verdict"] == "INVALID" and failed(r) == ["signature"], r
    assert p.verify(world["valid"])["verdict"] == "VALID"
    # an uploaded entry without a copy of its status list: offline, the status is not checked
    bare = trust.entry_for(stranger, {}, ISSUED)
    r = p.verify(world["stranger_credential"], uploaded=[bare])
    assert r["verdict"] == "INVALID" and failed(r) == ["status"], r
    assert "not checked: the trust list has no copy" in r["summary"]
    assert p.network == [] and p.errors == []
    p.close()


# ---------------------------------------------------------------------------- online
def test_served_page_checks_online(browser, world):
    origin = world["origin"]
    p = Page(browser, origin + "/verify/index.html", allow=origin)
    r = p.verify(world["late"])                   # revoked after the trust list was made
    assert r["verdict"] == "REVOKED" and "checked online" in r["summary"], r
    r = p.verify(world["valid"])
    assert r["verdict"] == "VALID" and "checked online" in detail(r, "status"), r
    assert "resolved online" in detail(r, "issuer")
    did_url = p.page.evaluate("d => inferlabVerify.parseDidWeb(d).documentUrl", world["course"].did)
    assert did_url == origin + "/.well-known/did.json"
    published = trust.load_trust_file(world["site"] / trust.TRUST_JSON)
    for name in ("late", "valid"):
        python = verifier.verify_credential(json.dumps(world[name]), published, fetch=didweb.fetch)
        assert python.verdict == p.verify(world[name])["verdict"]
    # the demo issuer's (unresolvable) domain is never contacted
    assert p.verify(world["demo_credential"])["verdict"] == "DEMO"
    fetched = {u for u in p.network if not u.startswith(origin + "/verify/")}
    assert fetched == {origin + "/.well-known/did.json", origin + "/status/1"}, p.network
    assert p.errors == []
    p.close()


def test_check_online_button_from_disk(browser, world):
    origin = world["origin"]
    p = Page(browser, (world["site"] / "index.html").as_uri(), allow=origin)
    p.page.fill("#credential", json.dumps(world["late"]))
    p.page.click("#verify")
    p.page.wait_for_selector("#result[data-verdict=VALID]")     # offline: cached list
    assert p.network == []
    p.page.click("#online")
    p.page.wait_for_selector("#result[data-verdict=REVOKED]")
    assert "checked online" in p.page.inner_text("#result")
    assert p.errors == []
    p.close()


def test_online_status_list_is_verified_before_use(browser, world, tmp_path):
    """A status list on the issuer's domain with a broken signature is refused, not used."""
    origin = world["origin"]
    served = Path(world["site"]).parent / "domain" / "status" / "1"
    good = served.read_text()
    bad = json.loads(good)
    bad["credentialSubject"]["encodedList"] = status_list.encode(status_list.new_bits())
    served.write_text(json.dumps(bad))
    try:
        p = Page(browser, origin + "/verify/index.html", allow=origin)
        r = p.verify(world["late"])
        assert r["verdict"] == "INVALID" and failed(r) == ["status"], r
        assert "signature does not verify" in r["summary"]
        assert p.errors == []
        p.close()
    finally:
        served.write_text(good)


# ---------------------------------------------------------------------------- the page UI
def test_paste_and_click_shows_the_verdict(page, world):
    p = page.page
    p.fill("#credential", json.dumps(world["valid"], indent=2))
    p.click("#verify")
    p.wait_for_selector("#result[data-valid=true]")
    assert "VALID" in p.inner_text("#result .banner") and "Grace Hopper" in p.inner_text("#result")
    tampered = copy.deepcopy(world["valid"])
    TAMPER["name"](tampered)
    p.fill("#credential", json.dumps(tampered))
    p.click("#verify")
    p.wait_for_selector("#result[data-verdict=INVALID]")
    assert "INVALID" in p.inner_text("#result .banner")


def test_file_picker(page, world, tmp_path):
    path = tmp_path / "credential.json"
    path.write_text(json.dumps(world["valid"]))
    page.page.set_input_files("#file", str(path))
    page.page.wait_for_selector("#result[data-valid=true]")


def test_verification_link_verifies_on_open(browser, world):
    link = links.verification_url((world["site"] / "index.html").as_uri(), world["valid"])
    p = Page(browser, link)
    p.page.wait_for_selector("#result[data-valid=true]", timeout=15000)
    damaged = Page(browser, (world["site"] / "index.html").as_uri() + "#vc=AAAA")
    damaged.page.wait_for_selector("#result[data-verdict=ERROR]", timeout=15000)
    assert "damaged" in damaged.page.inner_text("#result")
    for q in (p, damaged):
        assert q.network == [] and q.errors == []
        q.close()


# ------------------------------------------------------- same contexts, same canonical form
def test_bundle_carries_the_python_contexts(page):
    assert page.page.evaluate("InferlabLD.contexts") == bundled()


def test_browser_and_python_canonicalize_identically(page, world):
    doc = {k: v for k, v in world["valid"].items() if k != "proof"}
    doc["credentialSubject"]["identifier"][0]["identityHash"] = "Zoë 李 \"quoted\"\n"
    assert page.page.evaluate("d => InferlabLD.canonize(d)", doc) == canonicalize(doc)


def test_committed_page_shows_the_committed_demo_credential_as_demo(browser):
    demo = REPO / "docs" / "demo-credential.json"
    assert demo.is_file() and (PAGE / "trusted-issuers.js").is_file()
    assert (PAGE / "demo-issuers.js").is_file()
    p = Page(browser, (PAGE / "index.html").as_uri())
    r = p.verify(demo.read_text())
    assert r["verdict"] == "DEMO" and failed(r) == [], r
    p.page.fill("#credential", demo.read_text())
    p.page.click("#verify")
    p.page.wait_for_selector("#result[data-verdict=DEMO]")
    assert "DEMO" in p.page.inner_text("#result .banner")
    assert p.network == [] and p.errors == []
    p.close()
