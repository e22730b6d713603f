"""The static verification page (docs/verify/) in real headless Chromium.

The page is copied with a test issuer's trust list into a temporary folder and opened from
file:// - the hardest case for a static page (no server at all). Every network request is
intercepted and counted: the page must make none. Checked: valid, tampered (each field),
wrong-key, revoked and malformed credentials; the #vc= link; the file picker; that the bundle
carries exactly the Python package's JSON-LD contexts; that jsonld.js (in the browser) and pyld
(in Python) produce the same canonical N-Quads; and that the committed page verifies the committed
demo credential.

Needs Chromium from the system's packages (`make browser`): skipped when missing, a failure in CI.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from autograder.certificates import keys, links, proof, trust
from autograder.certificates.canon import canonicalize
from autograder.certificates.contexts import bundled
from autograder.certificates.credential import build_credential

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "verify"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser]


def _issue(issuer, name="Grace Hopper", when="2026-03-01T09:30:00Z"):
    unsigned = build_credential(name, issuer.profile, when, "Every graded notebook passed.")
    return proof.sign(unsigned, issuer.private_key, issuer.verification_method, when)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two issuers (the course's and a stranger's), credentials, and a copy of the page."""
    base = tmp_path_factory.mktemp("page")
    course = keys.init(base / "course-issuer", name="Page Test Course")
    stranger = keys.init(base / "stranger-issuer", name="Page Test Course")  # same name, other key
    valid, revoked = _issue(course), _issue(course, name="Revoked Person")
    profile = copy.deepcopy(course.profile)
    profile["revoked"] = [{"id": revoked["id"], "revokedAt": "2026-04-01T00:00:00Z",
                           "reason": "test"}]
    site = base / "site"
    site.mkdir()
    shutil.copy(PAGE / "index.html", site)
    shutil.copy(PAGE / "verify.js", site)
    shutil.copytree(PAGE / "vendor", site / "vendor")
    trust.publish(profile, site)
    return {"course": course, "stranger": stranger, "valid": valid, "revoked": revoked,
            "site": site}


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
    """A page that records every non-file request (and aborts it) and every script error."""

    def __init__(self, browser, url):
        self.page = browser.new_page()
        self.network, self.errors = [], []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                self.network.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=15000)

    def verify(self, credential) -> dict:
        text = credential if isinstance(credential, str) else json.dumps(credential)
        return self.page.evaluate("t => inferlabVerify.verifyCredential(t)", text)


@pytest.fixture(scope="module")
def page(browser, world):
    p = Page(browser, (world["site"] / "index.html").as_uri())
    yield p
    assert p.network == [], f"the page tried to use the network: {p.network}"
    assert p.errors == [], p.errors
    p.page.close()


def failed(result):
    return [c["name"] for c in result["checks"] if not c["ok"]]


# ------------------------------------------------------------------------------- checks
def test_valid_credential(page, world):
    r = page.verify(world["valid"])
    assert r["valid"], r
    assert [c["name"] for c in r["checks"]] == ["JSON", "structure", "proof", "issuer key",
                                                "signature", "revocation", "dates"]
    assert r["summary"].startswith('Grace Hopper earned "LLM Inference Optimization"')


TAMPER = {
    "name": lambda c: c["credentialSubject"]["identifier"][0].update(identityHash="Mallory"),
    "date": lambda c: c.update(validFrom="2026-02-01T09:30:00Z"),
    "achievement": lambda c: c["credentialSubject"]["achievement"].update(name="Astrophysics"),
    "issuer": lambda c: c["issuer"].update(name="Famous University"),
    "proof value": lambda c: c["proof"].update(proofValue=c["proof"]["proofValue"][:-2] + "11"),
}


@pytest.mark.parametrize("field", sorted(TAMPER))
def test_tampered_credential_is_invalid(page, world, field):
    tampered = copy.deepcopy(world["valid"])
    TAMPER[field](tampered)
    r = page.verify(tampered)
    assert not r["valid"] and failed(r) == ["signature"], r


def test_wrong_key(page, world):
    stranger = world["stranger"]
    # re-signed by a stranger under their own did:key: a correct signature by an untrusted key
    forged = {k: v for k, v in world["valid"].items() if k != "proof"}
    forged["issuer"] = stranger.profile["issuer"]
    forged = proof.sign(forged, stranger.private_key, stranger.verification_method,
                        forged["validFrom"])
    r = page.verify(forged)
    assert not r["valid"] and failed(r) == ["issuer key"], r
    assert "is not a published key" in r["summary"]
    # signed by the stranger but claiming the course's key: the signature fails
    claimed = {k: v for k, v in world["valid"].items() if k != "proof"}
    claimed = proof.sign(claimed, stranger.private_key, world["course"].verification_method,
                         claimed["validFrom"])
    r = page.verify(claimed)
    assert not r["valid"] and failed(r) == ["signature"], r


def test_revoked(page, world):
    r = page.verify(world["revoked"])
    assert not r["valid"] and failed(r) == ["revocation"] and "REVOKED" in r["summary"]


@pytest.mark.parametrize("mutate, check, message", [
    (lambda c: "{not json", "JSON", "not valid JSON"),
    (lambda c: {k: v for k, v in c.items() if k != "proof"}, "proof", "no proof object"),
    (lambda c: c | {"proof": c["proof"] | {"cryptosuite": "ecdsa-rdfc-2019"}},
     "proof", "unknown cryptosuite"),
    (lambda c: c | {"@context": c["@context"] + ["https://evil.example/c"]},
     "structure", "unknown @context"),
    (lambda c: c | {"favouriteColour": "green"}, "signature", "favouriteColour"),
])
def test_bad_input(page, world, mutate, check, message):
    r = page.verify(mutate(copy.deepcopy(world["valid"])))
    assert not r["valid"] and failed(r)[0] == check and message in r["summary"], r


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
    p.wait_for_selector("#result[data-valid=false]")
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
    damaged.page.wait_for_selector("#result[data-valid=false]", timeout=15000)
    assert "damaged" in damaged.page.inner_text("#result")
    for q in (p, damaged):
        assert q.network == [] and q.errors == []
        q.page.close()


# ------------------------------------------------------- same contexts, same canonical form
def test_bundle_carries_the_python_contexts(page):
    assert page.page.evaluate("InferlabLD.contexts") == bundled()


def test_browser_and_python_canonicalize_identically(page, world):
    doc = {k: v for k, v in world["valid"].items() if k != "proof"}
    doc["credentialSubject"]["identifier"][0]["identityHash"] = "Zoë 李 \"quoted\"\n"
    assert page.page.evaluate("d => InferlabLD.canonize(d)", doc) == canonicalize(doc)


def test_committed_page_verifies_the_committed_demo_credential(browser):
    demo = REPO / "docs" / "demo-credential.json"
    assert demo.is_file() and (PAGE / "trusted-issuers.js").is_file()
    p = Page(browser, (PAGE / "index.html").as_uri())
    r = p.verify(demo.read_text())
    assert r["valid"], r
    assert r["issuer"]["demo"] is True
    p.page.fill("#credential", demo.read_text())
    p.page.click("#verify")
    p.page.wait_for_selector("#result[data-valid=true]")
    assert "DEMO key" in p.page.inner_text("#result")
    assert p.network == [] and p.errors == []
    p.page.close()
