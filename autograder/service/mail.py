"""Sending the e-mail links: through an SMTP server, or printed on the console for a local service.

``mail`` setting: ``console`` (the default: the message is printed where the service runs, which is
all a student running the service on their own machine needs), or ``smtp://host:port`` (plain, with
STARTTLS when the server offers it) / ``smtps://host:port`` (TLS from the start). The password comes
from ``INFERLAB_SERVICE_SMTP_PASSWORD_FILE`` or ``INFERLAB_SERVICE_SMTP_PASSWORD``.
"""
from __future__ import annotations

import smtplib
import ssl
import sys
from email.message import EmailMessage
from urllib.parse import urlsplit

from .config import ConfigError, read_secret


class MailError(RuntimeError):
    """The message could not be handed to the mail server."""


class Mailer:
    def __init__(self, setting: str, sender: str, user: str | None = None, out=None):
        self.setting, self.sender, self.user = setting, sender, user
        self.out = out or sys.stdout
        if setting != "console":
            parts = urlsplit(setting)
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ConfigError(f"mail setting {setting!r}: use 'console', smtp://host:port or "
                                  "smtps://host:port")
            self.scheme, self.host = parts.scheme, parts.hostname
            self.port = parts.port or (465 if parts.scheme == "smtps" else 25)

    def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        if self.setting == "console":
            print(f"\n--- e-mail to {to}: {subject}\n{body}\n---", file=self.out, flush=True)
            return
        try:
            if self.scheme == "smtps":
                server = smtplib.SMTP_SSL(self.host, self.port, timeout=20,
                                          context=ssl.create_default_context())
            else:
                server = smtplib.SMTP(self.host, self.port, timeout=20)
            with server:
                if self.scheme == "smtp" and server.has_extn("starttls"):
                    server.starttls(context=ssl.create_default_context())
                password = read_secret("SMTP_PASSWORD")
                if self.user and password:
                    server.login(self.user, password)
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"could not send e-mail through {self.host}:{self.port}: "
                            f"{exc}") from None
