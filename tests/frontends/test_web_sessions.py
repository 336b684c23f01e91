"""The web page's signed values: one key, one salt per purpose, nothing passes as another."""

from __future__ import annotations

from mailwarden.frontends.web.sessions import SessionKeys
from mailwarden.model import Account


def keys(secret: bytes = b"k" * 32) -> SessionKeys:
    return SessionKeys(secret, lambda: 1_800_000_000.0)


def test_a_session_cookie_decodes_only_under_its_own_key() -> None:
    session, cookie = keys().new("user", "alice", "tag", 3600)
    assert keys().decode(cookie) == session
    assert keys(b"x" * 32).decode(cookie) is None
    assert keys().decode(cookie + "x") is None
    assert keys().decode("ünicode.junk") is None


def test_a_csrf_or_login_token_never_passes_as_a_session_signature() -> None:
    k = keys()
    session, cookie = k.new("admin", "admin", "tag", 3600)
    payload = cookie.rpartition(".")[0]
    for token in (k.csrf_token(session), k.login_token(payload)):
        assert k.decode(f"{payload}.{token}") is None
    assert k.csrf_token(session) != k.login_token(session.sid)


def test_a_password_change_changes_the_binding_tag() -> None:
    k = keys()
    old = Account(uid="alice", password="{PLAIN}one")
    new = Account(uid="alice", password="{PLAIN}two")
    assert k.user_tag(old) != k.user_tag(new)


def test_a_revoked_session_is_no_session() -> None:
    k = keys()
    session, cookie = k.new("user", "alice", "tag", 3600)
    k.revoke(session)
    assert k.decode(cookie) is None
