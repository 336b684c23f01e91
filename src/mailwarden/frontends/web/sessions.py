"""Signed session cookies, CSRF tokens and the cookie header of the web page.

What belongs here: everything the page signs with its key, and nothing else.
Signing is itsdangerous's (HMAC-SHA256, constant-time comparison), one salt
per purpose, so a CSRF token can never pass as a session and the reverse.

A session cookie is ``<payload>.<signature>``: the payload is the unpadded
urlsafe base64 of a small JSON object (role, uid, expiry, a random session id
and a *binding tag*). Expiry is in the payload rather than itsdangerous's
timestamp so that the page's clock decides (tests move it). The binding tag is
a signature over the administrator's stored password hash and role (admin and
enrol sessions), the bootstrap token (bootstrap) or the account's stored
password hash (user): changing any of them ends every session made with the old
one. Sign-out adds the session id to a per-process list of revoked ids until
the cookie would have expired anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, Signer

from mailwarden.config import HttpConfig
from mailwarden.config.secrets import read_secret_bytes
from mailwarden.errors import ConfigError
from mailwarden.model import Account

PREFIX = "/ui"
SESSION_COOKIE = "mw_session"
LOGIN_COOKIE = "mw_login"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    role: str  # "admin" | "enrol" (an administrator's first factor) | "bootstrap" | "user"
    uid: str
    expires: float
    sid: str
    tag: str


def load_secret(config: HttpConfig, *, base: Path) -> bytes:
    """The cookie key: the content of ``session_secret_file`` (read by config/secrets.py,
    relative to ``base``) or 32 random bytes."""
    if not config.session_secret_file:
        return secrets.token_bytes(32)
    key = "http.session_secret_file"
    data = read_secret_bytes(config.session_secret_file, key=key, resolve=lambda p: base / p)
    if len(data.strip()) < 16:
        raise ConfigError(f"{config.session_secret_file} holds fewer than 16 bytes", key=key)
    return data


def cookie_header(name: str, value: str, *, secure: bool, max_age: int) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Path=/ui, Secure over TLS."""
    parts = [f"{name}={value}", f"Path={PREFIX}", f"Max-Age={max_age}", "HttpOnly"]
    parts.append("SameSite=Strict")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """Makes and checks the signed values of one site (one key)."""

    def __init__(self, key: bytes, clock: Callable[[], float]) -> None:
        self._key = key
        self.clock = clock
        self._revoked: dict[str, float] = {}

    def _signer(self, purpose: str) -> Signer:
        return Signer(self._key, salt=f"mailwarden.web.{purpose}", digest_method=hashlib.sha256)

    def _mac(self, purpose: str, *parts: str) -> str:
        text = "\x00".join(parts).encode("utf-8", "surrogateescape")
        return self._signer(purpose).get_signature(text).decode("ascii")

    def staff_tag(self, name: str, password: str, role: str) -> str:
        """An administrator's sessions end when their password or role changes."""
        return self._mac("admin", name, password, role)[:22]

    def bootstrap_tag(self, config: HttpConfig) -> str:
        return self._mac("bootstrap", config.admin_username, config.admin_token)[:22]

    def user_tag(self, account: Account) -> str:
        return self._mac("user", account.uid, account.password)[:22]

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid)

    def login_token(self, value: str) -> str:
        """The CSRF token of a sign-in form, bound to its pre-session cookie ``value``."""
        return self._mac("login", value)

    def new(self, role: str, uid: str, tag: str, lifetime: float) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(
            role=role,
            uid=uid,
            expires=self.clock() + lifetime,
            sid=secrets.token_urlsafe(16),
            tag=tag,
        )
        body = {"r": role, "u": uid, "x": session.expires, "s": session.sid, "t": tag}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return session, self._signer("session").sign(payload).decode("ascii")

    def decode(self, cookie: str) -> Session | None:
        """The session a cookie holds, or None (bad signature, malformed, revoked)."""
        try:
            payload = self._signer("session").unsign(cookie.encode("ascii"))
            d = json.loads(_unb64(payload.decode("ascii")))
            session = Session(
                role=str(d["r"]),
                uid=str(d["u"]),
                expires=float(d["x"]),
                sid=str(d["s"]),
                tag=str(d["t"]),
            )
        except (BadSignature, ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = self.clock()
        for sid, until in list(self._revoked.items()):
            if until < now:
                del self._revoked[sid]
        self._revoked[session.sid] = session.expires
