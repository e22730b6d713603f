"""The service's settings: every one from a command-line option, else an environment variable,
else a default that works on one machine (127.0.0.1, SQLite, e-mail printed on the console).

Secrets never come from the command line or the repository: the session secret and the SMTP
password are read from a file (``..._FILE``) or an environment variable; a missing session secret
is generated once into the data folder with mode 0600.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ENV = "INFERLAB_SERVICE_"


def _env(name: str, default=None):
    return os.environ.get(ENV + name, default)


def default_data_dir() -> Path:
    """``$INFERLAB_SERVICE_DATA``, else ``$XDG_DATA_HOME/inferlab/service`` (~/.local/share/...)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(_env("DATA") or Path(base) / "inferlab" / "service").expanduser()


def read_secret(name: str) -> str | None:
    """A secret from ``$INFERLAB_SERVICE_<NAME>_FILE`` (a file's first line) or the variable."""
    path = _env(f"{name}_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {ENV}{name}_FILE={path}: {exc.strerror}") from None
    return _env(name)


class ConfigError(ValueError):
    """A setting that cannot work, worded for the person starting the service."""


@dataclass
class Limits:
    """Sizes and rates (per student or per client address): one user cannot hurt the others."""
    max_upload_bytes: int = 8 * 1024 * 1024
    submissions_per_minute: int = 6
    emails_per_hour: int = 5            # sign-up and log-in links, per e-mail address
    forms_per_minute: int = 20          # sign-up / log-in attempts per client address
    queued_per_student: int = 20        # submissions waiting at once


@dataclass
class ServiceConfig:
    base_url: str = ""                    # default: http://HOST:PORT
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None       # default: sqlite in data_dir
    issuer_name: str = "inferlab"
    mail: str = "console"                 # "console", or smtp://host:port (smtps:// for TLS)
    mail_from: str = "inferlab <no-reply@localhost>"
    smtp_user: str | None = None
    workers: int = 2                      # grading processes
    ray_address: str | None = None        # grade on a Ray cluster instead ("local" starts one)
    admin_emails: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    course_root: Path | None = None       # default: this repository

    @classmethod
    def from_env(cls, **overrides) -> ServiceConfig:
        """Settings from the environment, with ``overrides`` (None = not given) on top."""
        values = {
            "base_url": _env("BASE_URL"), "host": _env("HOST"),
            "port": int(_env("PORT")) if _env("PORT") else None,
            "data_dir": Path(_env("DATA")).expanduser() if _env("DATA") else None,
            "database_url": _env("DATABASE_URL"), "issuer_name": _env("ISSUER_NAME"),
            "mail": _env("MAIL"), "mail_from": _env("MAIL_FROM"), "smtp_user": _env("SMTP_USER"),
            "workers": int(_env("WORKERS")) if _env("WORKERS") else None,
            "ray_address": _env("RAY_ADDRESS"),
            "admin_emails": tuple(e.strip().lower() for e in _env("ADMINS", "").split(",")
                                  if e.strip()) or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**{k: v for k, v in values.items() if v is not None})
        for name in vars(config.limits):      # e.g. INFERLAB_SERVICE_SUBMISSIONS_PER_MINUTE=60
            if _env(name.upper()):
                setattr(config.limits, name, int(_env(name.upper())))
        config.base_url = (config.base_url or f"http://{config.host}:{config.port}").rstrip("/")
        if not config.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {config.base_url!r} must start with http:// or https://")
        if config.host not in ("127.0.0.1", "localhost", "::1") and not _env("ALLOW_PUBLIC"):
            raise ConfigError(f"refusing to listen on {config.host}: run it on 127.0.0.1 behind a "
                              f"TLS reverse proxy (set {ENV}ALLOW_PUBLIC=1 if you really mean it)")
        return config

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'service.db'}"

    @property
    def issuer_dir(self) -> Path:
        return Path(_env("ISSUER_DIR") or self.data_dir / "issuer").expanduser()

    @property
    def uploads(self) -> Path:
        return self.data_dir / "submissions"

    def session_secret(self) -> bytes:
        """The key that signs session cookies: from the environment, else data_dir/secret."""
        given = read_secret("SECRET")
        if given:
            return given.encode()
        path = self.data_dir / "secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()
