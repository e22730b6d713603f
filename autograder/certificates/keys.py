"""The issuer's Ed25519 key pair and its public issuer profile.

The private key signs every certificate, so it is handled like an SSH key:

* it lives **outside any git repository** (default ``~/.config/inferlab/issuer``, or
  ``$INFERLAB_ISSUER_DIR``); ``keys init`` refuses a folder inside a git work tree;
* the folder is ``0700`` and the key file ``0600`` from the moment it is created (``O_EXCL``, no
  window with wider permissions), and loading refuses a key that group or others can read;
* it is never printed, logged, or written into a credential - only the *public* key leaves.

Beside it, ``issuer.json`` is the **public issuer profile**: the Open Badges ``Profile`` that goes
into every credential, the public key as a ``Multikey`` (a did:key), the address of the
verification page, whether this is a throwaway demo key, and the revocation list. Publishing that
one file (``keys publish``) is what lets anyone verify the course's certificates.
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

from .multikey import did_key, did_key_verification_method, public_key_to_multikey

KEY_FILE = "issuer-key.pem"
PROFILE_FILE = "issuer.json"
COURSE_NAME = "inferlab"
COURSE_URL = "https://github.com/inferlab-course/inferlab"
VERIFY_URL = "https://inferlab-course.github.io/inferlab/verify/"
PROFILE_FORMAT = "inferlab-issuer-profile/1"


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
    p = path.resolve()
    for candidate in [p, *p.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def now_utc() -> str:
    """The current time as an XML Schema dateTime in UTC, whole seconds: 2026-11-26T12:00:00Z."""
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Issuer:
    """A loaded issuer: its folder, public profile and (only when signing) its private key."""

    directory: Path
    profile: dict
    private_key: Ed25519PrivateKey | None = None

    @property
    def verification_method(self) -> str:
        return self.profile["verificationMethod"]["id"]

    @property
    def is_demo(self) -> bool:
        return bool(self.profile.get("demo"))

    def __repr__(self) -> str:  # never show key material, even by accident in a traceback
        issuer_id = self.profile["issuer"]["id"]
        return f"Issuer({str(self.directory)!r}, {issuer_id!r}, demo={self.is_demo})"


def build_profile(public_key: bytes, name: str, url: str, verify_url: str, demo: bool) -> dict:
    """The public issuer profile for a raw Ed25519 public key."""
    multikey = public_key_to_multikey(public_key)
    did = did_key(multikey)
    if demo:
        name = f"{name} (DEMO KEY - not a real issuer)"
    return {
        "format": PROFILE_FORMAT,
        "issuer": {"id": did, "type": ["Profile"], "name": name, "url": url},
        "verificationMethod": {"id": did_key_verification_method(multikey), "type": "Multikey",
                               "controller": did, "publicKeyMultibase": multikey},
        "verifyUrl": verify_url,
        "demo": demo,
        "created": now_utc(),
        "revoked": [],
    }


def init(directory: Path | None = None, *, name: str = COURSE_NAME, url: str = COURSE_URL,
         verify_url: str = VERIFY_URL, demo: bool = False) -> Issuer:
    """Create a new issuer key and profile in ``directory`` (never overwriting, never in a repo)."""
    directory = Path(directory) if directory else default_issuer_dir()
    repo = git_work_tree_of(directory)
    if repo is not None:
        raise IssuerKeyError(f"{directory} is inside the git work tree {repo}: the issuer key "
                             "must live outside any repository (use --dir or $INFERLAB_ISSUER_DIR)")
    key_path = directory / KEY_FILE
    if key_path.exists():
        raise IssuerKeyError(f"an issuer key already exists at {key_path}; refusing to replace it "
                        "(certificates signed with it would become unverifiable). Move it away "
                        "first if you really mean to start over.")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    raw_public = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw)
    profile = build_profile(raw_public, name, url, verify_url, demo)
    save_profile(directory, profile)
    return Issuer(directory, profile, private_key)


def save_profile(directory: Path, profile: dict) -> Path:
    """Write the public profile (world-readable on purpose: it holds no secret)."""
    path = Path(directory) / PROFILE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def load_profile(directory: Path | None = None) -> Issuer:
    """Load the public profile only (enough to verify and to revoke)."""
    directory = Path(directory) if directory else default_issuer_dir()
    path = directory / PROFILE_FILE
    if not path.exists():
        raise IssuerKeyError(f"no issuer profile at {path}: run `python -m autograder keys init` "
                             "first (or pass --issuer-dir)")
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
        profile["issuer"]["id"], profile["verificationMethod"]["publicKeyMultibase"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IssuerKeyError(f"{path} is not an inferlab issuer profile ({exc})") from None
    return Issuer(directory, profile)


def load_signing_issuer(directory: Path | None = None) -> Issuer:
    """Load profile and private key, checking the key's permissions and that they match."""
    issuer = load_profile(directory)
    key_path = issuer.directory / KEY_FILE
    if not key_path.exists():
        raise IssuerKeyError(f"no issuer private key at {key_path}: "
                             "this machine can verify but not sign")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise IssuerKeyError(f"issuer key {key_path} is readable by others (mode {mode:o}); "
                        f"run `chmod 600 {key_path}` and check who may have copied it")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        raise IssuerKeyError(f"{key_path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IssuerKeyError(f"{key_path} is not an Ed25519 key")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if public_key_to_multikey(raw) != issuer.profile["verificationMethod"]["publicKeyMultibase"]:
        raise IssuerKeyError(f"{key_path} does not match the public key in {PROFILE_FILE}")
    issuer.private_key = key
    return issuer
