"""The web page under ``/ui/``: administrators manage accounts, users help themselves.

What belongs here: routing of ``/ui/...``, sessions and CSRF tokens, reading forms
with a size limit, rendering server-side HTML (``string.Template`` around the
layout in ``mailwarden/web/``, every value through :func:`html.escape`) and
calling the one code path for each change: :class:`~mailwarden.accounts.edit.AccountAdmin`
for accounts, :meth:`Engine.authenticate` for a user's sign-in, the guard for bans.
``HttpApi`` (frontends/http.py) hands every ``/ui`` path to :class:`WebUi`.

Security choices (docs/web.md has the reasons in prose):

* **Signed cookies, no server-side store.** A session is a cookie holding role,
  uid, expiry, a random session id and a *binding tag*, signed with HMAC-SHA256.
  The key is random per process unless ``http.session_secret_file`` names one
  (needed when several workers serve the same site). The binding tag is an HMAC
  of the admin credentials (admin) or of the account's stored password hash
  (user), so changing the admin token or a user's password ends every session
  made with the old one; a user session also ends when the account is disabled
  or its ``web`` service switched off (checked on every request). Sign-out adds
  the session id to a per-process list of revoked ids until the cookie expires.
* **Cookies** are ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui`` and ``Secure``
  whenever the request came over TLS.
* **CSRF**: every POST form carries a token derived from the session id (or, on
  the sign-in forms, from a random pre-session cookie); a POST without the right
  token is refused with 403 before anything else happens. A cross-site ``Origin``
  header is refused too.
* **No enumeration**: a failed sign-in says only "invalid login", whatever the
  engine's reason; users sign in through :meth:`Engine.authenticate` (front end
  ``web``, service ``web``), so the guard and the per-service switches apply.
* **No takeover with a session alone** (frontends/web_auth.py): a master login
  never reaches the self-service page, and a new password, SSH keys, an OpenPGP
  key or a forward address need the current password entered again.
* **Nothing secret leaves**: a password hash is never rendered; a generated
  password is shown once, on a page sent with ``Cache-Control: no-store`` (as
  every page is); errors never carry a trace. A Content-Security-Policy allows
  scripts and styles only from ``/ui/static/``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from mailwarden.accounts.edit import AccountAdmin, generate_password
from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.errors import (
    AccountChanged,
    AccountError,
    AccountExists,
    AccountNotFound,
    ConfigError,
    MailwardenError,
    TemporaryFailure,
)
from mailwarden.errors import HttpRefused as _Refused
from mailwarden.frontends import web_auth
from mailwarden.frontends.asgi import Receive, Scope, Send
from mailwarden.frontends.web_auth import SERVICE, Proof
from mailwarden.mailgate.changes import ChangePolicy, LineStatus, process_change
from mailwarden.mailgate.sshkeys import key_refusal, parse_key_line
from mailwarden.metrics import Metrics
from mailwarden.model import (
    Account,
    AccountStatus,
    Unavailable,
)
from mailwarden.schemes.common import check_password

log = logging.getLogger("mailwarden.web")


PREFIX = "/ui"
SESSION_COOKIE = "mw_session"
LOGIN_COOKIE = "mw_login"
#: Largest form accepted (an armoured OpenPGP key with signatures can be large).
MAX_FORM_BYTES = 262_144
#: Services shown as switches on the edit page besides those the account already has.
KNOWN_SERVICES = ("imap", "pop3", "smtp", "submission", "sieve", "lmtp", "web")
#: A failed administrator sign-in waits this long (the guard only sees user sign-ins).
ADMIN_FAILURE_DELAY = 1.0
SEARCH_LIMIT = 200
WRONG_CURRENT = "The current password is not right."

_STATIC = {"style.css": "text/css; charset=utf-8", "chart.js": "text/javascript; charset=utf-8"}
_RESULTS = ("accepted", "denied", "blocked", "unavailable")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# The mail gateway's field names (``[mailgate] fields``) -> Profile attribute and label.
PROFILE_FORM: dict[str, tuple[str, str]] = {
    "c": ("c", "Country (two letters)"),
    "l": ("l", "Locality"),
    "telephonenumber": ("telephone_number", "Telephone"),
    "facsimiletelephonenumber": ("facsimile_telephone_number", "Fax"),
    "postaladdress": ("postal_address", "Postal address"),
    "postalcode": ("postal_code", "Postal code"),
    "loginshell": ("login_shell", "Login shell"),
    "emailforward": ("email_forward", "Forward mail to"),
    "ircnick": ("irc_nick", "IRC nick"),
    "onvacation": ("on_vacation", "Vacation message"),
    "labeledurl": ("labeled_uri", "Home page (URL)"),
}

_NOTICES = {
    "saved": "Saved.",
    "created": "Account created.",
    "password": "Your password was changed.",
    "ssh": "SSH keys saved.",
    "pgp": "OpenPGP key saved.",
    "profile": "Profile saved.",
    "unblocked": "Ban lifted.",
    "out": "You are signed out.",
    "expired": "Your session has ended; please sign in again.",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    role: str  # "admin" | "user"
    uid: str
    expires: float
    sid: str
    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    secure: bool
    client_ip: str | None
    form: dict[str, list[str]]

    def arg(self, name: str) -> str:
        return (self.query.get(name) or [""])[0]

    def field(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]


def e(value: object) -> str:
    """HTML-escape any value (quotes too: values go into attributes)."""
    return html.escape(str(value), quote=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(config: HttpConfig, *, base: Path) -> bytes:
    """The cookie key: the content of ``session_secret_file`` or 32 random bytes."""
    if not config.session_secret_file:
        return secrets.token_bytes(32)
    path = Path(config.session_secret_file)
    if not path.is_absolute():
        path = base / path
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", key="http.session_secret_file"
        ) from exc
    if len(data) < 16:
        raise ConfigError(f"{path} holds fewer than 16 bytes", key="http.session_secret_file")
    return data


# --------------------------------------------------------------------------- OpenPGP


_ARMOR_RE = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S
)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def openpgp_fingerprint(armored: str) -> str:
    """The primary key fingerprint (upper-case hex) of one armoured OpenPGP public key.

    Parses the armour (RFC 9580 section 6, checksum checked when present) and
    the first packet, which must be a public-key packet of version 4 (SHA-1
    fingerprint, 40 hex digits) or 5/6 (SHA-256, 64 hex digits). ValueError with
    a message for the user otherwise. A private key is refused before anything.
    """
    if "PRIVATE KEY BLOCK" in armored:
        raise ValueError("this is a private key: paste the public key only")
    blocks = _ARMOR_RE.findall(armored)
    if len(blocks) != 1:
        raise ValueError("paste exactly one ASCII-armoured public key block")
    lines = [line.strip() for line in blocks[0].splitlines()]
    if "" in lines:  # armour headers (Version:, Comment:) end at the first blank line
        lines = lines[lines.index("") + 1 :]
    checksum = None
    if lines and lines[-1].startswith("="):
        checksum = lines.pop()
    try:
        data = base64.b64decode("".join(lines), validate=True)
        if checksum is not None and _crc24(data).to_bytes(3, "big") != base64.b64decode(
            checksum[1:], validate=True
        ):
            raise ValueError("the armour checksum does not match: the key was damaged")
    except binascii.Error:
        raise ValueError("the key block is not valid base64") from None
    if len(data) < 2 or not data[0] & 0x80:
        raise ValueError("not an OpenPGP packet")
    if data[0] & 0x40:  # new packet format
        tag, first = data[0] & 0x3F, data[1]
        if first < 192:
            length, start = first, 2
        elif first < 224 and len(data) > 2:
            length, start = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255 and len(data) > 5:
            length, start = int.from_bytes(data[2:6], "big"), 6
        else:
            raise ValueError("unsupported packet length")
    else:
        tag, kind = (data[0] >> 2) & 0x0F, data[0] & 0x03
        if kind == 3:
            raise ValueError("unsupported packet length")
        size = 1 << kind
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    body = data[start : start + length]
    if tag != 6 or len(body) != length or not body:
        raise ValueError("the block does not start with a public key")
    version = body[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + length.to_bytes(2, "big") + body).hexdigest().upper()  # noqa: S324 - RFC 9580 v4 fingerprints are SHA-1
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + length.to_bytes(4, "big") + body).hexdigest().upper()
    raise ValueError(f"OpenPGP key version {version} is not supported (4, 5 or 6)")


def import_into_keyring(gnupg_home: str, gpg_binary: str, armored: str) -> list[str]:
    """Import the key into the mail gateway's keyring; the fingerprints GnuPG imported.

    Blocking (runs ``gpg``): call it in a thread.
    """
    import gnupg  # type: ignore[import-untyped]  # noqa: PLC0415 - only when a key is set

    gpg = gnupg.GPG(gnupghome=gnupg_home, gpgbinary=gpg_binary)
    result = gpg.import_keys(armored)
    return [str(f).upper() for f in result.fingerprints]


# --------------------------------------------------------------------------- password policy


def password_problem(new: str, *, old: str, account: Account, min_length: int) -> str | None:
    """Why ``new`` is not acceptable as the account's password, or None."""
    if len(new) < min_length:
        return f"The new password needs at least {min_length} characters."
    try:
        check_password(new.encode("utf-8"))
    except ValueError as exc:
        return f"The new password is not possible: {exc}."
    if new == old:
        return "The new password must differ from the current one."
    lowered = new.casefold()
    names = {name.casefold() for name in account.logins()}
    names |= {name.partition("@")[0] for name in names}
    if lowered in names:
        return "The new password must differ from your login name."
    return None


# --------------------------------------------------------------------------- the app


class WebUi:
    """The ASGI application for ``/ui/...`` (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        config: HttpConfig,
        *,
        admin: AccountAdmin | None = None,
        metrics: Metrics | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.admin = admin
        self.metrics = metrics
        self.clock = clock
        source = engine.config.source
        # Relative paths in the config are relative to its file (as app.resolve_path does).
        self._base = Path(source).resolve().parent if not source.startswith("<") else Path.cwd()
        if secret is None:
            secret = load_secret(config, base=self._base)
        self._key = secret
        self._revoked: dict[str, float] = {}
        self._layout = string.Template(_resource("layout.html").decode("utf-8"))

    # ------------------------------------------------------------------ plumbing

    def _mac(self, *parts: str) -> str:
        msg = "\x00".join(parts).encode("utf-8", "surrogateescape")
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def _admin_tag(self) -> str:
        return self._mac("admin", self.config.admin_username, self.config.admin_token)[:22]

    def _user_tag(self, account: Account) -> str:
        return self._mac("user", account.uid, account.password)[:22]

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid)

    def _encode_session(self, session: Session) -> str:
        payload = _b64(
            json.dumps(
                {
                    "r": session.role,
                    "u": session.uid,
                    "x": session.expires,
                    "s": session.sid,
                    "t": session.tag,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._mac('session', payload)}"

    def _decode_session(self, cookie: str) -> Session | None:
        payload, _, mac = cookie.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            d = json.loads(_unb64(payload))
            session = Session(
                role=str(d["r"]),
                uid=str(d["u"]),
                expires=float(d["x"]),
                sid=str(d["s"]),
                tag=str(d["t"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.sid in self._revoked:
            return None
        return session

    def _cookie(self, name: str, value: str, request: Request, *, max_age: int) -> str:
        parts = [
            f"{name}={value}",
            f"Path={PREFIX}",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if request.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def _new_session(self, role: str, uid: str, tag: str, request: Request) -> str:
        lifetime = self.config.session_lifetime
        session = Session(
            role=role,
            uid=uid,
            expires=self.clock() + lifetime,
            sid=secrets.token_urlsafe(16),
            tag=tag,
        )
        return self._cookie(
            SESSION_COOKIE, self._encode_session(session), request, max_age=int(lifetime)
        )

    def _revoke(self, session: Session) -> None:
        now = self.clock()
        for sid, until in list(self._revoked.items()):
            if until < now:
                del self._revoked[sid]
        self._revoked[session.sid] = session.expires

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = await self._request(scope, receive)
            response = await self._route(request)
        except _Refused as exc:
            response = self._page(exc_title(exc.status), _error(str(exc)), status=exc.status)
        except AccountChanged as exc:
            log.warning("web: %s", exc)
            response = self._page(
                "Changed meanwhile",
                _error("The account was changed meanwhile; nothing was saved. Try again."),
                status=409,
            )
        except TemporaryFailure as exc:
            rid = secrets.token_hex(8)
            log.warning("session=%s web: temporary failure: %s", rid, exc)
            response = self._page(
                "Temporarily unavailable",
                _error(f"The service does not answer; try again (request id {rid})."),
                status=503,
            )
        except Exception:
            # The request boundary: logged once, never a trace or a cause in the page.
            rid = secrets.token_hex(8)
            log.exception("session=%s web: internal error on %s", rid, scope.get("path"))
            response = self._page("Error", _error(f"Internal error (id {rid})."), status=500)
        await _send(send, response)

    async def _request(self, scope: Scope, receive: Receive) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies: dict[str, str] = {}
        for part in headers.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name not in cookies:
                cookies[name] = value
        method = scope["method"]
        form: dict[str, list[str]] = {}
        if method == "POST":
            body = await _read_body(receive, MAX_FORM_BYTES)
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                raise _Refused(415, "Forms are sent as application/x-www-form-urlencoded.")
            try:
                form = parse_qs(
                    body.decode("utf-8"),
                    keep_blank_values=True,
                    max_num_fields=500,
                    strict_parsing=False,
                )
            except (UnicodeDecodeError, ValueError):
                raise _Refused(400, "The form could not be read.") from None
        client = scope.get("client")
        return Request(
            method=method,
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
            headers=headers,
            cookies=cookies,
            secure=scope.get("scheme") == "https",
            client_ip=client[0] if client else None,
            form=form,
        )

    def _check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        # "null" (privacy contexts) is left to the token, which every POST needs anyway.
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise _Refused(403, "Cross-site form refused.")

    def _check_csrf(self, request: Request, session: Session) -> None:
        self._check_origin(request)
        if not hmac.compare_digest(request.field("csrf"), self.csrf_token(session)):
            raise _Refused(403, "The form has expired or did not come from this site; reload it.")

    # ------------------------------------------------------------------ sessions

    async def _session(self, request: Request, role: str) -> tuple[Session, Account | None] | None:
        """The valid session of ``role`` (and the user's account), or None."""
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self._decode_session(cookie) if cookie else None
        if session is None or session.role != role or session.expires < self.clock():
            return None
        if role == "admin":
            if not self.config.admin_token or not hmac.compare_digest(
                session.tag, self._admin_tag()
            ):
                return None
            return session, None
        if self.admin is None:
            return None
        try:
            account = await self.admin.show(session.uid)
        except AccountNotFound:
            return None
        if (
            account.status is not AccountStatus.ACTIVE
            or not account.service_enabled(SERVICE)
            or not hmac.compare_digest(session.tag, self._user_tag(account))
        ):
            return None
        return session, account

    def _expired(self, request: Request, login: str) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        other = self._decode_session(cookie) if cookie else None
        wanted = "admin" if login.startswith(PREFIX + "/admin/") else "user"
        if other is not None and other.role != wanted and other.expires >= self.clock():
            # A live session of the other role (a user opening an admin page): keep it.
            return _redirect(login)
        done = "expired" if cookie else ""
        target = login + (f"?done={done}" if done else "")
        clear = self._cookie(SESSION_COOKIE, "", request, max_age=0)
        return _redirect(target, cookies=(clear,) if cookie else ())

    # ------------------------------------------------------------------ routing

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if not self.config.web_enabled:
            raise _Refused(404, "The web page is not enabled on this server.")
        if path.startswith(PREFIX + "/static/"):
            return _static(path.removeprefix(PREFIX + "/static/"))
        if method not in ("GET", "HEAD", "POST"):
            raise _Refused(405, "Method not allowed.")
        if path in (PREFIX, PREFIX + "/"):
            if await self._session(request, "admin"):
                return _redirect(PREFIX + "/admin/accounts")
            return _redirect(
                PREFIX + "/me" if await self._session(request, "user") else PREFIX + "/login"
            )
        if path == PREFIX + "/login":
            return await self._user_login(request)
        if path == PREFIX + "/admin/login":
            return await self._admin_login(request)
        if path == PREFIX + "/logout" and method == "POST":
            return await self._logout(request)
        if path.startswith(PREFIX + "/admin/"):
            found = await self._session(request, "admin")
            if found is None:
                if path == PREFIX + "/admin/stats":
                    return Response(401, b'{"error":"sign in"}', "application/json")
                return self._expired(request, PREFIX + "/admin/login")
            session = found[0]
            if method == "POST":
                self._check_csrf(request, session)
            return await self._admin_page(request, session, path.removeprefix(PREFIX + "/admin/"))
        if path == PREFIX + "/me" or path.startswith(PREFIX + "/me/"):
            user = await self._session(request, "user")
            if user is None or user[1] is None:
                return self._expired(request, PREFIX + "/login")
            session, account = user[0], user[1]
            if method == "POST":
                self._check_csrf(request, session)
            return await self._user_page(
                request, session, account, path.removeprefix(PREFIX + "/me")
            )
        raise _Refused(404, "No such page.")

    # ------------------------------------------------------------------ rendering

    def _page(
        self,
        title: str,
        body: str,
        *,
        status: int = 200,
        session: Session | None = None,
        notice: str = "",
        cookies: tuple[str, ...] = (),
    ) -> Response:
        nav = ""
        if session is not None:
            links = (
                [
                    ("accounts", "Accounts"),
                    ("new", "New account"),
                    ("chart", "Live logins"),
                    ("bans", "Banned sources"),
                ]
                if session.role == "admin"
                else []
            )
            base = PREFIX + ("/admin/" if session.role == "admin" else "/me")
            nav = "".join(f'<a href="{e(base + slug)}">{e(text)}</a>' for slug, text in links)
            if session.role == "user":
                nav += f'<a href="{PREFIX}/me">{e(session.uid)}</a>'
            nav += (
                f'<form method="post" action="{PREFIX}/logout">{self._csrf_field(session)}'
                f'<button type="submit">Sign out</button></form>'
            )
        text = self._layout.substitute(
            title=e(title),
            nav=nav,
            notice=f'<p class="notice" role="status">{e(notice)}</p>' if notice else "",
            body=body,
        )
        return Response(
            status, text.encode("utf-8"), headers=tuple(("set-cookie", c) for c in cookies)
        )

    def _csrf_field(self, session: Session) -> str:
        return f'<input type="hidden" name="csrf" value="{e(self.csrf_token(session))}">'

    def _login_form(
        self, request: Request, title: str, action: str, user_label: str, error: str = ""
    ) -> Response:
        value = request.cookies.get(LOGIN_COOKIE, "")
        cookies: tuple[str, ...] = ()
        if not re.fullmatch(r"[A-Za-z0-9_-]{22,64}", value):
            value = secrets.token_urlsafe(24)
            cookies = (self._cookie(LOGIN_COOKIE, value, request, max_age=3600),)
        token = self._mac("login", value)
        body = (
            (_error(error) if error else "")
            + f'<form class="box" method="post" action="{e(action)}">'
            f'<input type="hidden" name="csrf" value="{e(token)}">'
            f'<label for="username">{e(user_label)}</label>'
            f'<input type="text" id="username" name="username" autocomplete="username" required>'
            f'<label for="password">Password</label>'
            f'<input type="password" id="password" name="password" '
            f'autocomplete="current-password" required>'
            f'<button type="submit" id="signin">Sign in</button></form>'
        )
        other = (
            f'<p><a href="{PREFIX}/admin/login">Administrator sign-in</a></p>'
            if action == PREFIX + "/login"
            else f'<p><a href="{PREFIX}/login">Sign in with your mail account</a></p>'
        )
        notice = _NOTICES.get(request.arg("done"), "")
        return self._page(
            title, body + other, status=400 if error else 200, notice=notice, cookies=cookies
        )

    def _check_login_csrf(self, request: Request) -> None:
        self._check_origin(request)
        value = request.cookies.get(LOGIN_COOKIE, "")
        if not value or not hmac.compare_digest(request.field("csrf"), self._mac("login", value)):
            raise _Refused(403, "The form has expired or did not come from this site; reload it.")

    # ------------------------------------------------------------------ sign-in

    async def _admin_login(self, request: Request) -> Response:
        title, action = "Administrator sign-in", PREFIX + "/admin/login"
        if request.method != "POST":
            return self._login_form(request, title, action, "Administrator name")
        self._check_login_csrf(request)
        c = self.config
        name_ok = hmac.compare_digest(request.field("username").encode(), c.admin_username.encode())
        token_ok = hmac.compare_digest(request.field("password").encode(), c.admin_token.encode())
        if not (c.admin_token and name_ok and token_ok):
            log.info("web: failed administrator sign-in from %s", request.client_ip)
            await asyncio.sleep(ADMIN_FAILURE_DELAY)
            return self._login_form(request, title, action, "Administrator name", "invalid login")
        log.info("web: administrator signed in from %s", request.client_ip)
        cookie = self._new_session("admin", c.admin_username, self._admin_tag(), request)
        return _redirect(PREFIX + "/admin/accounts", cookies=(cookie,))

    async def _user_login(self, request: Request) -> Response:
        title, action = "Sign in", PREFIX + "/login"
        label = "Mail address or user name"
        if request.method != "POST":
            return self._login_form(request, title, action, label)
        self._check_login_csrf(request)
        outcome = await web_auth.authenticate(
            self.engine,
            request.field("username"),
            request.field("password"),
            client_ip=request.client_ip,
            secured=request.secure,
        )
        if isinstance(outcome, Unavailable):
            return self._login_form(
                request, title, action, label, "The service is temporarily unavailable; try again."
            )
        accepted = web_auth.self_service(outcome)
        if accepted is None or self.admin is None:
            return self._login_form(request, title, action, label, "invalid login")
        account = accepted.account
        cookie = self._new_session("user", account.uid, self._user_tag(account), request)
        return _redirect(PREFIX + "/me", cookies=(cookie,))

    async def _proven(self, request: Request, account: Account) -> bool:
        """Whether the form's ``current`` field is the account's current password."""
        proof = await web_auth.confirm_password(
            self.engine,
            account,
            request.field("current"),
            client_ip=request.client_ip,
            secured=request.secure,
        )
        return proof is Proof.CONFIRMED

    async def _logout(self, request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self._decode_session(cookie) if cookie else None
        if session is not None:
            self._check_csrf(request, session)
            self._revoke(session)
        clear = self._cookie(SESSION_COOKIE, "", request, max_age=0)
        login = PREFIX + ("/admin/login" if session and session.role == "admin" else "/login")
        return _redirect(login + "?done=out", cookies=(clear,))

    # ------------------------------------------------------------------ administrator

    def _need_admin(self) -> AccountAdmin:
        if self.admin is None:
            raise _Refused(404, "Account administration is not enabled in this process.")
        return self.admin

    async def _admin_page(self, request: Request, session: Session, page: str) -> Response:
        post = request.method == "POST"
        if page == "accounts" and not post:
            return await self._accounts(request, session)
        if page == "new":
            return await self._new_account(request, session)
        if page == "account":
            return await self._edit_account(request, session)
        if page == "password" and post:
            return await self._reset_password(request, session)
        if page == "chart" and not post:
            return self._page("Live logins", _CHART, session=session)
        if page == "stats" and not post:
            return self._stats()
        if page == "bans":
            return await self._bans(request, session)
        if page == "unblock" and post:
            target = request.field("target")
            if not target:
                raise _Refused(400, "Nothing to unblock.")
            lifted = await self.engine.guard.unblock(None if target == "*" else target)
            log.info("web: administrator unblocked %s (%d ban(s))", target, lifted)
            return _redirect(PREFIX + "/admin/bans?done=unblocked")
        raise _Refused(404, "No such page.")

    async def _accounts(self, request: Request, session: Session) -> Response:
        admin = self._need_admin()
        query = request.arg("q").strip()
        pattern = query if any(c in query for c in "*?") else f"*{query}*" if query else "*"
        found = await admin.search(pattern, limit=SEARCH_LIMIT)
        rows = "".join(
            "<tr>"
            f'<td><a href="{_account_link(a.uid)}">{e(a.uid)}</a></td>'
            f"<td>{e(a.mail or '')}</td>"
            f'<td class="status-{e(a.status.value)}">{e(a.status.value)}</td>'
            f"<td>{e(', '.join(sorted(s for s, on in a.services.items() if not on)) or '-')}</td>"
            "</tr>"
            for a in found
        )
        more = (
            f"<p>Only the first {SEARCH_LIMIT} are shown; narrow the search.</p>"
            if len(found) >= SEARCH_LIMIT
            else ""
        )
        body = (
            f'<form method="get" action="{PREFIX}/admin/accounts">'
            f'<label for="q">Search (uid or address; * and ? work)</label>'
            f'<input type="search" id="q" name="q" value="{e(query)}">'
            f'<button type="submit">Search</button></form>'
            f"<p>{len(found)} account(s)</p>"
            "<table><thead><tr><th>uid</th><th>mail</th><th>status</th>"
            f"<th>services off</th></tr></thead><tbody>{rows}</tbody></table>{more}"
        )
        return self._page(
            "Accounts", body, session=session, notice=_NOTICES.get(request.arg("done"), "")
        )

    async def _new_account(self, request: Request, session: Session) -> Response:
        admin = self._need_admin()
        error = ""
        if request.method == "POST":
            uid = request.field("uid").strip()
            mail = request.field("mail").strip() or (uid if "@" in uid else "")
            password = request.field("password")
            generated = None if password else generate_password()
            try:
                account = await admin.create(
                    Account(uid=uid),
                    password=generated or password.encode("utf-8"),
                    changes={"mail": mail or None},
                )
            except (AccountExists, AccountError) as exc:
                error = str(exc)
            else:
                log.info("web: administrator created account %s", account.uid)
                shown = (
                    "<p>The generated password, shown only this once:</p>"
                    f'<p class="secret" id="generated">{e(generated.decode())}</p>'
                    if generated
                    else ""
                )
                link = _account_link(account.uid)
                body = f'{shown}<p><a id="edit-new" href="{link}">Edit {e(account.uid)}</a></p>'
                return self._page(
                    "Account created", body, session=session, notice=_NOTICES["created"]
                )
        form = request.form
        body = (
            (_error(error) if error else "")
            + f'<form class="box" method="post" action="{PREFIX}/admin/new">'
            + self._csrf_field(session)
            + _text_input("uid", "uid (login name)", (form.get("uid") or [""])[0], required=True)
            + _text_input(
                "mail",
                "Mail address (default: the uid if it has an @)",
                (form.get("mail") or [""])[0],
            )
            + '<label for="password">Password (empty: generate one and show it once)</label>'
            '<input type="password" id="password" name="password" autocomplete="new-password">'
            '<button type="submit" id="create">Create</button></form>'
        )
        return self._page("New account", body, session=session, status=400 if error else 200)

    async def _edit_account(self, request: Request, session: Session) -> Response:
        admin = self._need_admin()
        uid = request.field("uid") if request.method == "POST" else request.arg("uid")
        try:
            account = await admin.show(uid)
        except AccountNotFound:
            raise _Refused(404, "No such account.") from None
        error = ""
        if request.method == "POST":
            f = request.field
            services = {
                name: f"service.{name}" in request.form
                for name in sorted({*KNOWN_SERVICES, *account.services})
            }
            changes: dict[str, object] = {
                "mail": f("mail").strip() or None,
                "alternate_addresses": [
                    a for a in re.split(r"[\s,]+", f("alternate_addresses")) if a
                ],
                "home": f("home").strip() or None,
                "mail_location": f("mail_location").strip() or None,
                "mail_host": f("mail_host").strip() or None,
                "quota_bytes": f("quota_bytes").strip() or None,
                "status": f("status"),
                "services": services,
            }
            try:
                await admin.patch(account.uid, changes)
            except AccountError as exc:
                error = str(exc)
            else:
                log.info("web: administrator changed account %s", account.uid)
                return _redirect(
                    f"{PREFIX}/admin/account?uid={quote(account.uid, safe='')}&done=saved"
                )
        return self._edit_form(
            account, session, error=error, notice=_NOTICES.get(request.arg("done"), "")
        )

    def _edit_form(
        self,
        account: Account,
        session: Session,
        *,
        error: str = "",
        notice: str = "",
        generated: bytes | None = None,
    ) -> Response:
        statuses = "".join(
            f'<option value="{e(s.value)}"{" selected" if s is account.status else ""}>'
            f"{e(s.value)}</option>"
            for s in AccountStatus
        )
        switches = "".join(
            f'<label class="inline"><input type="checkbox" name="service.{e(name)}" '
            f'id="service-{e(name)}"{" checked" if account.service_enabled(name) else ""}> '
            f"{e(name)}</label>"
            for name in sorted({*KNOWN_SERVICES, *account.services})
        )
        shown = (
            '<section class="box"><p>The new password, shown only this once:</p>'
            f'<p class="secret" id="generated">{e(generated.decode())}</p></section>'
            if generated
            else ""
        )
        quota = "" if account.quota_bytes is None else str(account.quota_bytes)
        body = (
            (_error(error) if error else "")
            + shown
            + f'<form class="box" method="post" action="{PREFIX}/admin/account">'
            + self._csrf_field(session)
            + f'<input type="hidden" name="uid" value="{e(account.uid)}">'
            + _text_input("mail", "Mail address", account.mail or "")
            + _text_input(
                "alternate_addresses",
                "Other addresses (comma separated)",
                ", ".join(account.alternate_addresses),
            )
            + _text_input("home", "Home", account.home or "")
            + _text_input("mail_location", "Mail location", account.mail_location or "")
            + _text_input("mail_host", "Mail host", account.mail_host or "")
            + _text_input("quota_bytes", "Quota (bytes)", quota)
            + f'<label for="status">Status</label><select id="status" name="status">{statuses}'
            "</select>"
            f"<fieldset><legend>Services</legend>{switches}</fieldset>"
            '<button type="submit" id="save">Save</button></form>'
            f'<form class="box" method="post" action="{PREFIX}/admin/password">'
            + self._csrf_field(session)
            + f'<input type="hidden" name="uid" value="{e(account.uid)}">'
            "<p>Reset the password: a new one is generated and shown once.</p>"
            '<button type="submit" id="reset">Generate a new password</button></form>'
            f"<p>Password: {'set' if account.password else 'none'}"
            f' · OpenPGP: <span class="mono">{e(account.pgp_fingerprint or "-")}</span>'
            f" · SSH keys: {len(account.ssh_keys)}</p>"
        )
        return self._page(
            f"Account {account.uid}",
            body,
            session=session,
            status=400 if error else 200,
            notice=notice,
        )

    async def _reset_password(self, request: Request, session: Session) -> Response:
        admin = self._need_admin()
        uid = request.field("uid")
        try:
            generated = await admin.set_password(uid, None)
            account = await admin.show(uid)
        except AccountNotFound:
            raise _Refused(404, "No such account.") from None
        log.info("web: administrator reset the password of %s", account.uid)
        return self._edit_form(
            account, session, generated=generated, notice="A new password was set."
        )

    def _stats(self) -> Response:
        """Login decisions so far by result (the chart turns two of these into a rate)."""
        counts = dict.fromkeys(_RESULTS, 0)
        if self.metrics is not None:
            for result, count in self.metrics.auth_results().items():
                if result in counts:
                    counts[result] += count
        body = {"time": self.clock(), "results": counts, "available": self.metrics is not None}
        return Response(200, json.dumps(body).encode(), "application/json")

    async def _bans(self, request: Request, session: Session) -> Response:
        bans = await self.engine.guard.describe_bans()
        rows = "".join(
            f'<tr><td class="mono">{e(b["target"])}</td><td>{e(b["kind"])}</td>'
            f"<td>{e(b['rule'])}</td><td>{e(b['ttl'])} s</td><td>"
            f'<form method="post" action="{PREFIX}/admin/unblock">{self._csrf_field(session)}'
            f'<input type="hidden" name="target" value="{e(b["target"])}">'
            '<button type="submit">Unblock</button></form></td></tr>'
            for b in bans
        )
        table = (
            "<table><thead><tr><th>source</th><th>kind</th><th>rule</th><th>left</th><th></th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            if bans
            else "<p>No source is banned.</p>"
        )
        everything = (
            f'<form method="post" action="{PREFIX}/admin/unblock">{self._csrf_field(session)}'
            '<input type="hidden" name="target" value="*">'
            '<button type="submit">Lift every ban</button></form>'
            if bans
            else ""
        )
        return self._page(
            "Banned sources",
            table + everything,
            session=session,
            notice=_NOTICES.get(request.arg("done"), ""),
        )

    # ------------------------------------------------------------------ user

    async def _user_page(
        self, request: Request, session: Session, account: Account, page: str
    ) -> Response:
        admin = self._need_admin()
        post = request.method == "POST"
        if page in ("", "/") and not post:
            return self._me(request, session, account)
        if not post:
            raise _Refused(404, "No such page.")
        if page == "/password":
            return await self._change_password(request, session, account, admin)
        if page == "/ssh":
            return await self._set_ssh_keys(request, session, account, admin)
        if page == "/pgp":
            return await self._set_pgp_key(request, session, account, admin)
        if page == "/profile":
            return await self._set_profile(request, session, account, admin)
        raise _Refused(404, "No such page.")

    def _me(
        self,
        request: Request,
        session: Session,
        account: Account,
        *,
        error: str = "",
        section: str = "",
        status: int = 200,
    ) -> Response:
        def err(name: str) -> str:
            return _error(error) if error and section == name else ""

        min_len = self.config.min_password_length
        profile = account.profile.as_dict()
        allowed = [
            f.lower() for f in self.engine.config.mailgate.fields if f.lower() in PROFILE_FORM
        ]
        shells = self.engine.config.mailgate.login_shells
        fields = "".join(
            _select(
                f"profile.{seed}",
                PROFILE_FORM[seed][1],
                profile.get(PROFILE_FORM[seed][0], ""),
                ("", *shells),
            )
            if seed == "loginshell"
            else _text_input(
                f"profile.{seed}", PROFILE_FORM[seed][1], profile.get(PROFILE_FORM[seed][0], "")
            )
            for seed in allowed
        )
        keys = "\n".join(account.ssh_keys)
        confirmed = any(seed in web_auth.CONFIRMED_PROFILE_FIELDS for seed in allowed)
        body = (
            f"<p>Signed in as <strong>{e(account.uid)}</strong>"
            + (f" ({e(account.mail)})" if account.mail and account.mail != account.uid else "")
            + "</p>"
            + '<h2 id="password-section">Password</h2>'
            + err("password")
            + f'<form class="box" method="post" action="{PREFIX}/me/password">'
            + self._csrf_field(session)
            + '<label for="current">Current password</label>'
            '<input type="password" id="current" name="current" autocomplete="current-password" '
            "required>"
            f'<label for="new">New password (at least {min_len} characters)</label>'
            '<input type="password" id="new" name="new" autocomplete="new-password" required>'
            '<label for="repeat">New password again</label>'
            '<input type="password" id="repeat" name="repeat" autocomplete="new-password" required>'
            '<button type="submit" id="change-password">Change password</button></form>'
            + '<h2 id="ssh-section">SSH keys</h2>'
            + err("ssh")
            + f'<form class="box" method="post" action="{PREFIX}/me/ssh">'
            + self._csrf_field(session)
            + '<label for="keys">One public key per line (authorized_keys format); '
            "saving replaces every stored key, an empty box removes them</label>"
            f'<textarea id="keys" name="keys" rows="5">{e(keys)}</textarea>'
            + _current_input("ssh-current", required=True)
            + '<button type="submit" id="save-ssh">Save SSH keys</button></form>'
            + '<h2 id="pgp-section">OpenPGP key</h2>'
            + err("pgp")
            + f'<form class="box" method="post" action="{PREFIX}/me/pgp">'
            + self._csrf_field(session)
            + f'<p>Current fingerprint: <span class="mono" id="fingerprint">'
            f"{e(account.pgp_fingerprint or 'none')}</span></p>"
            '<label for="key">Paste your ASCII-armoured public key '
            "(-----BEGIN PGP PUBLIC KEY BLOCK-----)</label>"
            '<textarea id="key" name="key" rows="6"></textarea>'
            + _current_input("pgp-current", required=True)
            + '<button type="submit" id="save-pgp">Save OpenPGP key</button></form>'
            + '<h2 id="profile-section">Profile</h2>'
            + err("profile")
            + f'<form class="box" method="post" action="{PREFIX}/me/profile">'
            + self._csrf_field(session)
            + (fields or "<p>No profile field may be changed on this site.</p>")
            + (
                _current_input(
                    "profile-current", required=False, note=" (to change the forward address)"
                )
                if confirmed
                else ""
            )
            + ('<button type="submit" id="save-profile">Save profile</button>' if fields else "")
            + "</form>"
        )
        return self._page(
            "Your account",
            body,
            session=session,
            status=status,
            notice=_NOTICES.get(request.arg("done"), ""),
        )

    async def _change_password(
        self, request: Request, session: Session, account: Account, admin: AccountAdmin
    ) -> Response:
        current, new = request.field("current"), request.field("new")
        problem = None
        if new != request.field("repeat"):
            problem = "The two new passwords differ."
        else:
            problem = password_problem(
                new, old=current, account=account, min_length=self.config.min_password_length
            )
        if problem is None and not await self._proven(request, account):
            # The current password again: a stolen session alone cannot take the account.
            problem = WRONG_CURRENT
        if problem is not None:
            return self._me(
                request, session, account, error=problem, section="password", status=400
            )
        await admin.set_password(account.uid, new.encode("utf-8"))
        fresh = await admin.show(account.uid)
        log.info("web: %s changed their password", account.uid)
        cookie = self._new_session("user", fresh.uid, self._user_tag(fresh), request)
        self._revoke(session)
        return _redirect(PREFIX + "/me?done=password", cookies=(cookie,))

    async def _set_ssh_keys(
        self, request: Request, session: Session, account: Account, admin: AccountAdmin
    ) -> Response:
        cfg = self.engine.config.mailgate
        lines: list[str] = []
        fingerprints: set[str] = set()
        problem = None
        for raw in request.field("keys").splitlines():
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                key = parse_key_line(text)
            except MailwardenError as exc:
                problem = f"{exc}"
                break
            refusal = key_refusal(key, blocklist=cfg.ssh_key_blocklist)
            if refusal is not None:
                problem = refusal
                break
            if key.fingerprint not in fingerprints:
                fingerprints.add(key.fingerprint)
                lines.append(key.line())
        if problem is None and len(lines) > cfg.max_ssh_keys:
            problem = f"At most {cfg.max_ssh_keys} keys per account."
        if problem is None and not await self._proven(request, account):
            problem = WRONG_CURRENT
        if problem is None:
            try:
                await admin.apply(
                    account.uid, lambda a: dataclasses.replace(a, ssh_keys=tuple(lines))
                )
            except AccountError as exc:
                problem = str(exc)
        if problem is not None:
            return self._me(request, session, account, error=problem, section="ssh", status=400)
        log.info("web: %s stored %d SSH key(s)", account.uid, len(lines))
        return _redirect(PREFIX + "/me?done=ssh")

    async def _set_pgp_key(
        self, request: Request, session: Session, account: Account, admin: AccountAdmin
    ) -> Response:
        armored = request.field("key")
        try:
            fingerprint = openpgp_fingerprint(armored)
        except ValueError as exc:
            return self._me(request, session, account, error=str(exc), section="pgp", status=400)
        if not await self._proven(request, account):
            return self._me(
                request, session, account, error=WRONG_CURRENT, section="pgp", status=400
            )
        cfg = self.engine.config.mailgate
        home = self._base / cfg.gnupg_home
        if home.is_dir():
            # The gateway trusts exactly the keys in its keyring: put this one there.
            try:
                imported = await asyncio.to_thread(
                    import_into_keyring, str(home), cfg.gpg_binary, armored
                )
            except OSError as exc:
                log.warning("web: cannot run gpg to import a key: %s", exc)
                raise TemporaryFailure("gpg did not run") from exc
            if fingerprint not in imported:
                return self._me(
                    request,
                    session,
                    account,
                    section="pgp",
                    status=400,
                    error="GnuPG did not accept this key.",
                )
        await admin.apply(
            account.uid, lambda a: dataclasses.replace(a, pgp_fingerprint=fingerprint)
        )
        log.info("web: %s set OpenPGP key %s", account.uid, fingerprint)
        return _redirect(PREFIX + "/me?done=pgp")

    async def _set_profile(
        self, request: Request, session: Session, account: Account, admin: AccountAdmin
    ) -> Response:
        cfg = self.engine.config.mailgate
        allowed = [f.lower() for f in cfg.fields if f.lower() in PROFILE_FORM]
        current = account.profile.as_dict()
        commands: list[str] = []
        for seed in allowed:
            attr = PROFILE_FORM[seed][0]
            value = request.field(f"profile.{seed}").strip()
            if any(c in value for c in "\r\n"):
                return self._me(
                    request,
                    session,
                    account,
                    section="profile",
                    status=400,
                    error=f"{PROFILE_FORM[seed][1]}: one line only.",
                )
            if value and value != current.get(attr):
                commands.append(f"{seed}: {value}")
            elif not value and attr in current:
                commands.append(f"del {seed}")
        if not commands:
            return _redirect(PREFIX + "/me?done=profile")
        # The mail gateway's own rules, all or nothing: each field checked as a
        # signed ``change`` mail would have it checked.
        policy = dataclasses.replace(ChangePolicy.from_config(cfg), atomic=True)
        result = process_change("\n".join(commands), account, policy, lambda name: None)
        problems = [
            message.removeprefix("==> ")
            for line in result.lines
            if line.status in (LineStatus.HALTED, LineStatus.REFUSED)
            for message in line.messages
            if not message.startswith("Halted")
        ]
        if problems or not result.committed:
            return self._me(
                request,
                session,
                account,
                section="profile",
                status=400,
                error=" ".join(problems) or "The profile was not changed.",
            )
        touched = {command.removeprefix("del ").partition(":")[0] for command in commands}
        if touched & web_auth.CONFIRMED_PROFILE_FIELDS and not await self._proven(request, account):
            return self._me(
                request, session, account, section="profile", status=400, error=WRONG_CURRENT
            )
        profile = result.account.profile
        await admin.apply(account.uid, lambda a: dataclasses.replace(a, profile=profile))
        log.info("web: %s changed their profile", account.uid)
        return _redirect(PREFIX + "/me?done=profile")


def exc_title(status: int) -> str:
    return {
        400: "Bad request",
        403: "Refused",
        404: "Not found",
        405: "Not allowed",
        413: "Too large",
        415: "Unsupported form",
    }.get(status, "Error")


def _account_link(uid: str) -> str:
    return e(f"{PREFIX}/admin/account?uid={quote(uid, safe='')}")


def _error(message: str) -> str:
    return f'<p class="error" role="alert">{e(message)}</p>'


def _select(name: str, label: str, value: str, options: tuple[str, ...]) -> str:
    ident = name.replace(".", "-")
    if value not in options:
        options = (*options, value)
    choices = "".join(
        f'<option value="{e(o)}"{" selected" if o == value else ""}>{e(o or "-")}</option>'
        for o in options
    )
    return (
        f'<label for="{e(ident)}">{e(label)}</label>'
        f'<select id="{e(ident)}" name="{e(name)}">{choices}</select>'
    )


def _current_input(ident: str, *, required: bool, note: str = "") -> str:
    """The "current password" box of a form whose change needs it (web_auth.py)."""
    return (
        f'<label for="{e(ident)}">Current password{e(note)}</label>'
        f'<input type="password" id="{e(ident)}" name="current" '
        f'autocomplete="current-password"{" required" if required else ""}>'
    )


def _text_input(name: str, label: str, value: str, *, required: bool = False) -> str:
    ident = name.replace(".", "-")
    req = " required" if required else ""
    return (
        f'<label for="{e(ident)}">{e(label)}</label>'
        f'<input type="text" id="{e(ident)}" name="{e(name)}" value="{e(value)}"{req}>'
    )


_CHART = (
    "<p>Login decisions per second over every front end, by outcome (updated every 2 s).</p>"
    '<canvas id="chart"></canvas><p class="legend" id="legend"></p>'
    '<p>Totals since start: <span id="totals">…</span></p>'
    '<script src="/ui/static/chart.js"></script>'
)


def _resource(name: str) -> bytes:
    return resources.files("mailwarden").joinpath("web", name).read_bytes()


def _static(name: str) -> Response:
    ctype = _STATIC.get(name)
    if ctype is None:
        raise _Refused(404, "No such file.")
    return Response(200, _resource(name), ctype, headers=(("cache-control", "max-age=300"),))


def _redirect(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
    headers = (("location", location), *(("set-cookie", c) for c in cookies))
    return Response(303, b"", "text/plain; charset=utf-8", headers=headers)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, "The client went away.")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "The form is too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", _CSP.encode()),
    ]
    if not any(name == "cache-control" for name, _ in response.headers):
        headers.append((b"cache-control", b"no-store"))
    for name, value in response.headers:
        safe = value.replace("\r", " ").replace("\n", " ")
        headers.append((name.lower().encode(), safe.encode("utf-8")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
