"""Tokens, signed cookies and rate limits: the small pieces every route's protection is made of.

* **Secrets at rest are hashed.** E-mail links, session ids and API tokens are random (256 bits)
  and only their SHA-256 is stored, so a copy of the database logs nobody in.
* **Cookies are signed** (HMAC-SHA256 with the service's secret) and HttpOnly, SameSite=Lax,
  Secure behind https.
* **CSRF**: every form carries a token that must equal the one bound to the browser (the session's,
  or before log-in a signed random cookie); SameSite alone is not relied on.
* **Rate limits** are sliding windows in memory, per key (an address, a student): the service
  runs as one process, so memory is the right place.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Signer:
    """``sign("abc")`` -> ``"abc.<mac>"``; ``unsign`` gives back ``"abc"`` or None if forged."""

    def __init__(self, secret: bytes, purpose: str):
        self.key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def _mac(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:43]

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str | None) -> str | None:
        if not signed or "." not in signed or len(signed) > 512:
            return None
        value, mac = signed.rsplit(".", 1)
        return value if hmac.compare_digest(mac, self._mac(value)) else None


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.events: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Count one event; 0 when allowed, else the seconds to wait before the next one."""
        now = time.monotonic()
        with self.lock:
            events = self.events[key]
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return max(1.0, events[0] + self.window - now)
            events.append(now)
            return 0.0
