"""The issuer: a did:web identity (domain + name) with a set of Ed25519 keys, and its status list.

An issuer is

* a **DID** bound to the course service's domain (``didweb.py``): ``did:web:certs.example.org``
  for the base URL ``https://certs.example.org``;
* a **name** (what wallets and the verification page show) and that **base URL**;
* a **key set** ``key-1``, ``key-2`` ...: each one an Ed25519 key pair. ``keys rotate`` adds a
  new key and retires the previous one at a date; the public halves, with their ``created`` and
  ``retired`` dates, become the DID document (``did.json``) the domain serves;
* its **status list** state: which revocation-list indexes are in use and which are set.

Private keys are handled like SSH keys:

* they live **outside any git repository** (default ``~/.config/inferlab/issuer``, or
  ``$INFERLAB_ISSUER_DIR``); creating one inside a git work tree is refused;
* the folder is ``0700`` and each ``key-N.pem`` ``0600`` from the moment it is created
  (``O_EXCL``: no window with wider permissions), and loading refuses a key others can read;
* they are never printed, logged, or written into a credential - only public keys leave.

Files in the issuer folder: ``issuer.json`` (public: DID, name, URL, public keys), ``key-N.pem``
(secret), ``status.json`` (private: allocated and revoked indexes - no reasons, no names).
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import didweb, proof, status_list
from .multikey import public_key_to_multikey

PROFILE_FILE = "issuer.json"
STATUS_FILE = "status.json"
PROFILE_FORMAT = "inferlab-issuer/2"
COURSE_NAME = "inferlab"
VERIFY_URL = "https://inferlab-course.github.io/inferlab/verify/"
DEMO_BASE_URL = "https://demo.inferlab.invalid"     # .invalid: a name that can never resolve
DEMO_LABEL = " (DEMO KEY - not a real issuer)"


class IssuerKeyError(RuntimeError):
    """A problem with the issuer key or profile, worded for the person running the command."""


def default_issuer_dir() -> Path:
    """``$INFERLAB_ISSUER_DIR``, else ``$XDG_CONFIG_HOME/inferlab/issuer`` (``~/.config/...``)."""
    if os.environ.get("INFERLAB_ISSUER_DIR"):
        return Path(os.environ["INFERLAB_ISSUER_DIR"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "inferlab" / "issuer"


def git_work_tree_of(path: Path) -> Path | None:
    """The git work tree containing ``path`` (or the nearest existing parent), if any."""
    p = Path(path).resolve()
    for candidate in [p, *p.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def now_utc() -> str:
    """The current time as an XML Schema dateTime in UTC, whole seconds: 2026-11-26T12:00:00Z."""
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time with a time zone (``Z`` allowed); ValueError otherwise."""
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (e.g. 2027-01-01T00:00:00Z)")
    return t


# ------------------------------------------------------------------------ private key files
def key_file(directory: Path, key_id: str) -> Path:
    return Path(directory) / f"{key_id}.pem"


def generate_key(directory: Path, key_id: str) -> tuple[Ed25519PrivateKey, str]:
    """Create ``<directory>/<key_id>.pem`` (0600, folder 0700, never in a git work tree, never
    overwriting); returns (private key, its public key as Multikey ``z6Mk...``)."""
    directory = Path(directory)
    repo = git_work_tree_of(directory)
    if repo is not None:
        raise IssuerKeyError(f"{directory} is inside the git work tree {repo}: the issuer key "
                             "must live outside any repository (use --dir or $INFERLAB_ISSUER_DIR)")
    path = key_file(directory, key_id)
    if path.exists():
        raise IssuerKeyError(f"an issuer key already exists at {path}; refusing to replace it "
                             "(certificates signed with it would become unverifiable)")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return private_key, multikey_of(private_key)


def multikey_of(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
    return public_key_to_multikey(raw)


def load_private_key(directory: Path, key_id: str) -> Ed25519PrivateKey:
    """Load ``<key_id>.pem``, refusing a file that group or others can read."""
    path = key_file(directory, key_id)
    if not path.exists():
        raise IssuerKeyError(f"no issuer private key at {path}: this machine can verify but "
                             "not sign")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IssuerKeyError(f"issuer key {path} is readable by others (mode {mode:o}); "
                             f"run `chmod 600 {path}` and check who may have copied it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError:
        raise IssuerKeyError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IssuerKeyError(f"{path} is not an Ed25519 key")
    return key


# ----------------------------------------------------------------------------- the issuer
@dataclass
class Issuer:
    """A loaded issuer: folder, public profile (``issuer.json``), and - only when signing - the
    private key of its current key."""

    directory: Path
    profile: dict
    private_key: Ed25519PrivateKey | None = None

    did = property(lambda self: self.profile["did"])
    name = property(lambda self: self.profile["name"])
    base_url = property(lambda self: self.profile["url"])
    keys = property(lambda self: self.profile["keys"])
    is_demo = property(lambda self: bool(self.profile.get("demo")))

    @property
    def current_key(self) -> dict:
        """The newest key: the one that signs."""
        return self.keys[-1]

    @property
    def verification_method(self) -> str:
        return f"{self.did}#{self.current_key['id']}"

    @property
    def issuer_profile(self) -> dict:
        """The Open Badges ``Profile`` written into every credential."""
        return {"id": self.did, "type": ["Profile"], "name": self.name, "url": self.base_url}

    @property
    def status_list_url(self) -> str:
        return f"{self.base_url}/status/1"

    def did_document(self) -> dict:
        return didweb.did_document(self.did, self.keys)

    def __repr__(self) -> str:  # never show key material, even by accident in a traceback
        return f"Issuer({str(self.directory)!r}, {self.did!r}, demo={self.is_demo})"


def init(directory: Path | None = None, *, base_url: str, name: str = COURSE_NAME,
         demo: bool = False) -> Issuer:
    """Create a new issuer for ``base_url`` with its first key, ``key-1``."""
    directory = Path(directory) if directory else default_issuer_dir()
    did = didweb.did_from_url(base_url)
    if (directory / PROFILE_FILE).exists():
        raise IssuerKeyError(f"an issuer already exists in {directory}; refusing to replace it "
                             "(certificates signed with it would become unverifiable)")
    private_key, multikey = generate_key(directory, "key-1")
    profile = {"format": PROFILE_FORMAT, "did": did, "name": name + (DEMO_LABEL if demo else ""),
               "url": base_url.rstrip("/"), "demo": demo,
               "keys": [{"id": "key-1", "publicKeyMultibase": multikey, "created": now_utc(),
                         "retired": None}]}
    save_profile(directory, profile)
    return Issuer(directory, profile, private_key)


def rotate(directory: Path | None = None, retire_at: str | None = None) -> Issuer:
    """Add key-(N+1) and retire key-N at ``retire_at`` (default: now). Returns the issuer,
    ready to sign with the new key. Proofs by the old key dated before ``retire_at`` stay valid."""
    issuer = load_profile(directory)
    when = retire_at or now_utc()
    try:
        parse_time(when)
    except ValueError as exc:
        raise IssuerKeyError(f"--retire-at: {exc}") from None
    old = issuer.current_key
    new_id = f"key-{len(issuer.keys) + 1}"
    private_key, multikey = generate_key(issuer.directory, new_id)
    old["retired"] = when
    issuer.keys.append({"id": new_id, "publicKeyMultibase": multikey, "created": now_utc(),
                        "retired": None})
    save_profile(issuer.directory, issuer.profile)
    issuer.private_key = private_key
    return issuer


def save_profile(directory: Path, profile: dict) -> Path:
    """Write ``issuer.json`` (world-readable on purpose: it holds no secret)."""
    return _write_json(Path(directory) / PROFILE_FILE, profile, 0o644)


def _write_json(path: Path, data: dict, mode: int) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def load_profile(directory: Path | None = None) -> Issuer:
    """Load the public profile only (enough to show and to publish the DID document)."""
    directory = Path(directory) if directory else default_issuer_dir()
    path = directory / PROFILE_FILE
    if not path.exists():
        raise IssuerKeyError(f"no issuer profile at {path}: run `python -m autograder keys init "
                             "--base-url URL` first (or pass --dir / --issuer-dir)")
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
        if profile.get("format") != PROFILE_FORMAT:
            raise ValueError(f"format {profile.get('format')!r}, expected {PROFILE_FORMAT!r}")
        profile["did"], profile["url"], profile["keys"][-1]["publicKeyMultibase"]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise IssuerKeyError(f"{path} is not an inferlab issuer profile ({exc}); an old "
                             "did:key issuer must be replaced: keys init --base-url URL --dir NEW"
                             ) from None
    return Issuer(directory, profile)


def load_signing_issuer(directory: Path | None = None) -> Issuer:
    """Load the profile and the current key's private key, checking that they match."""
    issuer = load_profile(directory)
    current = issuer.current_key
    if current.get("retired") and parse_time(current["retired"]) <= datetime.now(timezone.utc):
        raise IssuerKeyError(f"{current['id']} was retired on {current['retired']}: "
                             "run `python -m autograder keys rotate` for a new key")
    key = load_private_key(issuer.directory, current["id"])
    if multikey_of(key) != current["publicKeyMultibase"]:
        raise IssuerKeyError(f"{key_file(issuer.directory, current['id'])} does not match the "
                             f"public key in {PROFILE_FILE}")
    issuer.private_key = key
    return issuer


# ------------------------------------------------------------------------- the status list
def _status_state(issuer: Issuer) -> dict:
    path = issuer.directory / STATUS_FILE
    if not path.exists():
        return {"allocated": [], "revoked": []}
    return json.loads(path.read_text(encoding="utf-8"))


def allocate_status_index(issuer: Issuer) -> int:
    """A fresh random index in the issuer's status list, recorded as used."""
    state = _status_state(issuer)
    index = status_list.free_index(set(state["allocated"]))
    state["allocated"].append(index)
    _write_json(issuer.directory / STATUS_FILE, state, 0o600)
    return index


def revoke_index(issuer: Issuer, index: int) -> bool:
    """Set bit ``index`` (False when it already was set). Publish the list afterwards."""
    state = _status_state(issuer)
    if index in state["revoked"]:
        return False
    status_list.set_bit(status_list.new_bits(), index)   # validates the range
    state["revoked"].append(index)
    _write_json(issuer.directory / STATUS_FILE, state, 0o600)
    return True


def signed_status_list(issuer: Issuer, valid_from: str | None = None) -> dict:
    """The status list credential at ``<base>/status/1``, signed with the current key."""
    if issuer.private_key is None:
        raise IssuerKeyError("signing the status list needs the issuer's private key")
    bits = status_list.new_bits()
    for index in _status_state(issuer)["revoked"]:
        status_list.set_bit(bits, index)
    when = valid_from or now_utc()
    unsigned = status_list.status_list_credential(issuer.status_list_url, issuer.did, bits, when)
    return proof.sign(unsigned, issuer.private_key, issuer.verification_method, when)
