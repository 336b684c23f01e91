"""The web page under /ui/ on the real uvicorn listener, driven by a raw HTTP client.

Sessions, cookie flags, CSRF refusal, expiry and escaping are checked on the wire;
the browser test (tests/peers/test_web_browser.py) drives the same pages in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import html
import re
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from mailwarden.accounts import totp
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.accounts.openpgp import public_key_fingerprint as openpgp_fingerprint
from mailwarden.accounts.staff import Staff
from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.base import Directory
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ConfigError, FieldError
from mailwarden.frontends.http import HttpApi, HttpServer, start_http
from mailwarden.frontends.web import WebUi, load_secret, password_problem
from mailwarden.frontends.web.pages import utc
from mailwarden.metrics import Metrics
from mailwarden.model import Accepted, Account, AccountStatus, Denied, DenyReason
from mailwarden.state.base import AuditQuery
from tests.conftest import EngineFactory
from tests.frontends.test_http_frontend import CONFIG, Response, request
from tests.helpers import attempt, hashed, make_cert, make_config
from tests.staffing import ADMIN_NAME, ADMIN_PASSWORD, add_admin, admin_code, staff_with_tokens

WEB_CONFIG = dataclasses.replace(CONFIG, max_body_bytes=65536)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Served:
    server: HttpServer
    web: WebUi
    clock: Clock
    staff: Staff | None = None


@contextlib.asynccontextmanager
async def web_site(
    engine: Engine,
    directory: Directory,
    *,
    config: HttpConfig = WEB_CONFIG,
    scheme: str = "SHA256-CRYPT",
    metrics: Metrics | None = None,
) -> AsyncIterator[Served]:
    """The HTTP listener with the web page and account administration over
    ``directory``, its clock a test :class:`Clock`; closed on exit."""
    clock = Clock()
    staff = await staff_with_tokens(
        engine.hasher,
        bootstrap_token=config.admin_token,
        bootstrap_name=config.admin_username,
        guard=engine.guard,
        clock=clock,
    )
    await add_admin(staff.store)
    admin = AccountAdmin(
        directory=directory,
        hasher=engine.hasher,
        engine=engine,
        default_scheme=scheme,
        audit=staff.audit,
    )
    running = await start_http(
        engine, config, resolve=Path, admin=admin, staff=staff, metrics=metrics
    )
    api = running._server.config.app  # the HttpApi uvicorn serves
    assert isinstance(api, HttpApi)
    api.web.clock = clock
    try:
        yield Served(running, api.web, clock, staff)
    finally:
        await running.close()


@pytest_asyncio.fixture
async def served(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[Served]:
    await directory.create(
        Account(uid="carol", password=hashed("secret"), status=AccountStatus.DISABLED)
    )
    metrics = Metrics()
    engine.metrics = metrics
    async with web_site(engine, directory, metrics=metrics) as site:
        yield site


class Client:
    """Keeps cookies like a browser; forms are sent url-encoded."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    async def go(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = urlencode(form or {}).encode() if method == "POST" else b""
        all_headers = {**(headers or {})}
        if method == "POST":
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        r = await request(self.served.server, method, path, body, headers=all_headers)
        # read_response keeps one value per header name; uvicorn sends one Set-Cookie here.
        cookie = r.headers.get("set-cookie")
        if cookie:
            self.set_cookies.append(cookie)
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def form_token(self, path: str) -> str:
        r = await self.go("GET", path)
        assert r.status == 200, r.body
        return token_of(r.body)

    async def admin_login(
        self, password: str = ADMIN_PASSWORD, *, name: str = ADMIN_NAME, code: str | None = None
    ) -> Response:
        """Sign in as an administrator, with the current code of :data:`ADMIN_SECRET`
        (the clock moves a step first: a code is accepted once)."""
        self.served.clock.now += totp.STEP
        token = await self.form_token("/ui/admin/login")
        form = {"csrf": token, "username": name, "password": password}
        form["code"] = admin_code(self.served.clock.now) if code is None else code
        return await self.go("POST", "/ui/admin/login", form)

    async def user_login(self, username: str, password: str) -> Response:
        token = await self.form_token("/ui/login")
        return await self.go(
            "POST", "/ui/login", {"csrf": token, "username": username, "password": password}
        )


def token_of(page: bytes) -> str:
    m = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert m is not None, page
    return html.unescape(m.group(1).decode())


async def test_pages_need_a_session_and_send_strangers_to_the_sign_in_page(
    served: Served,
) -> None:
    c = Client(served)
    for path, login in (
        ("/ui/admin/accounts", "/ui/admin/login"),
        ("/ui/admin/bans", "/ui/admin/login"),
        ("/ui/me", "/ui/login"),
        ("/ui/", "/ui/login"),
    ):
        r = await c.go("GET", path)
        assert r.status == 303, path
        assert r.headers["location"] == login
    assert (await c.go("GET", "/ui/admin/stats")).status == 401


async def test_admin_session_cookie_is_httponly_strict_and_scoped_to_ui(served: Served) -> None:
    c = Client(served)
    r = await c.admin_login()
    assert r.status == 303
    assert r.headers["location"] == "/ui/admin/accounts"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("mw_session=")
    flags = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in flags
    assert "SameSite=Strict" in flags
    assert "Path=/ui" in flags
    assert "Secure" not in flags  # plain HTTP here; see the TLS test below
    page = await c.go("GET", "/ui/admin/accounts")
    assert page.status == 200
    assert b"alice" in page.body
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_a_wrong_admin_password_says_only_invalid_login(served: Served) -> None:
    c = Client(served)
    r = await c.admin_login("nope")
    assert r.status == 400
    assert b"invalid login" in r.body
    assert "mw_session" not in c.cookies


async def test_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    served: Served, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.admin_login()
    for form in ({"uid": "mallory"}, {"uid": "mallory", "csrf": "forged"}):
        r = await c.go("POST", "/ui/admin/new", form)
        assert r.status == 403
    # The right token from another origin is refused too.
    token = await c.form_token("/ui/admin/new")
    r = await c.go(
        "POST",
        "/ui/admin/new",
        {"uid": "mallory", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status == 403
    assert await directory.get("mallory") is None
    r = await c.go("POST", "/ui/admin/new", {"uid": "mallory", "csrf": token})
    assert r.status == 200
    assert b'id="generated"' in r.body
    assert await directory.get("mallory") is not None


async def test_the_sign_in_form_needs_its_pre_session_cookie(served: Served) -> None:
    c = Client(served)
    token = await c.form_token("/ui/login")
    c.cookies.pop("mw_login")
    r = await c.go("POST", "/ui/login", {"csrf": token, "username": "alice", "password": "secret"})
    assert r.status == 403
    assert "mw_session" not in c.cookies


async def test_a_session_expires_after_its_lifetime(served: Served) -> None:
    c = Client(served)
    await c.admin_login()
    assert (await c.go("GET", "/ui/admin/accounts")).status == 200
    served.clock.now += WEB_CONFIG.session_lifetime + 1
    r = await c.go("GET", "/ui/admin/accounts")
    assert r.status == 303
    assert r.headers["location"] == "/ui/admin/login?done=expired"
    assert "Max-Age=0" in r.headers["set-cookie"]


async def test_sign_out_revokes_the_cookie_even_if_replayed(served: Served) -> None:
    c = Client(served)
    await c.admin_login()
    stolen = dict(c.cookies)
    page = await c.go("GET", "/ui/admin/accounts")
    r = await c.go("POST", "/ui/logout", {"csrf": token_of(page.body)})
    assert r.status == 303
    c.cookies = stolen
    assert (await c.go("GET", "/ui/admin/accounts")).status == 303


async def test_a_tampered_cookie_is_no_session(served: Served) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    payload, _, mac = c.cookies["mw_session"].partition(".")
    forged = base64.urlsafe_b64decode(payload + "==").replace(b'"alice"', b'"carol"')
    c.cookies["mw_session"] = base64.urlsafe_b64encode(forged).rstrip(b"=").decode() + "." + mac
    assert (await c.go("GET", "/ui/me")).status == 303


async def test_every_value_is_escaped(served: Served, directory: MemoryDirectory) -> None:
    evil = '<script>alert("x")</script>'
    await directory.create(Account(uid="eve", password=hashed("secret"), home=evil))
    c = Client(served)
    await c.admin_login()
    page = await c.go("GET", "/ui/admin/account?uid=eve")
    assert page.status == 200
    assert b"<script>alert" not in page.body
    assert html.escape(evil, quote=True).encode() in page.body
    search = await c.go("GET", "/ui/admin/accounts?q=%3Cb%3E%22x")
    assert b"<b>" not in search.body
    assert b"&lt;b&gt;&quot;x" in search.body


async def test_the_password_hash_is_never_shown(served: Served, directory: MemoryDirectory) -> None:
    c = Client(served)
    await c.admin_login()
    alice = await directory.get("alice")
    assert alice is not None
    for path in ("/ui/admin/account?uid=alice", "/ui/admin/accounts"):
        page = await c.go("GET", path)
        assert alice.password.encode() not in page.body
        assert alice.password.split("$")[-1].encode() not in page.body
    u = Client(served)
    await u.user_login("alice", "secret")
    me = await u.go("GET", "/ui/me")
    assert me.status == 200
    assert alice.password.split("$")[-1].encode() not in me.body


async def test_admin_disables_an_account_and_switches_a_service_off(
    served: Served, engine: Engine, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.admin_login()
    page = await c.go("GET", "/ui/admin/account?uid=alice")
    form = {
        "csrf": token_of(page.body),
        "uid": "alice",
        "mail": "alice@example.com",
        "alternate_addresses": "a.liddell@example.com",
        "home": "/var/mail/alice",
        "mail_location": "maildir:~/Maildir",
        "mail_host": "",
        "quota_bytes": "1000000",
        "status": "active",
        "service.imap": "on",
        "service.web": "on",
    }
    r = await c.go("POST", "/ui/admin/account", form)
    assert r.status == 303, r.body
    alice = await directory.get("alice")
    assert alice is not None
    assert not alice.service_enabled("pop3")
    assert alice.service_enabled("imap")
    assert isinstance(await engine.authenticate(attempt("alice", service="imap")), Accepted)
    r = await c.go("POST", "/ui/admin/account", {**form, "app_passwords_only": "on"})
    assert r.status == 303
    assert isinstance(await engine.authenticate(attempt("alice", service="imap")), Denied)
    assert isinstance(await engine.authenticate(attempt("alice", service="web")), Accepted)
    r = await c.go("POST", "/ui/admin/account", {**form, "status": "disabled"})
    assert r.status == 303
    assert isinstance(await engine.authenticate(attempt("alice", service="imap")), Denied)
    alice = await directory.get("alice")
    assert alice is not None and not alice.app_passwords_only  # the box was not ticked


async def test_unknown_user_wrong_password_and_disabled_account_look_the_same(
    served: Served,
) -> None:
    bodies = []
    for user, password in (("nobody", "secret"), ("alice", "wrong"), ("carol", "secret")):
        c = Client(served)
        r = await c.user_login(user, password)
        assert r.status == 400
        assert b"invalid login" in r.body
        assert "mw_session" not in c.cookies
        bodies.append(re.sub(rb'value="[^"]+"', b"", r.body))
    assert bodies[0] == bodies[1] == bodies[2]


async def test_a_user_changes_their_password_under_the_policy(
    served: Served, engine: Engine
) -> None:
    c = Client(served)
    r = await c.user_login("alice@example.com", "secret")
    assert r.status == 303
    assert r.headers["location"] == "/ui/me"
    page = await c.go("GET", "/ui/me")
    token = token_of(page.body)

    async def change(current: str, new: str, repeat: str | None = None) -> Response:
        form = {"csrf": token, "current": current, "new": new, "repeat": repeat or new}
        return await c.go("POST", "/ui/me/password", form)

    for current, new, repeat, why in (
        ("secret", "short", None, b"at least 10"),
        ("secret", "long enough 1", "long enough 2", b"differ"),
        ("secret", "alice@example.com", None, b"login name"),
        ("wrong", "a fine new password", None, b"current password is not right"),
    ):
        r = await change(current, new, repeat)
        assert r.status == 400
        assert why in r.body
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)
    r = await change("secret", "a fine new password")
    assert r.status == 303
    assert r.headers["location"] == "/ui/me?done=password"
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Denied)
    assert isinstance(await engine.authenticate(attempt("alice", "a fine new password")), Accepted)
    # The session continues with the new cookie ...
    assert (await c.go("GET", "/ui/me")).status == 200


async def test_a_password_change_elsewhere_ends_the_users_sessions(
    served: Served, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    assert (await c.go("GET", "/ui/me")).status == 200
    admin = served.web.admin
    assert admin is not None
    await admin.set_password("alice", b"set by the admin")
    assert (await c.go("GET", "/ui/me")).status == 303


def ed25519_line(seed: int, comment: str = "me@laptop") -> str:
    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = string(b"ssh-ed25519") + string(bytes([seed]) * 32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


async def test_ssh_keys_are_checked_and_replace_the_stored_ones(
    served: Served, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    token = token_of((await c.go("GET", "/ui/me")).body)
    form = {"csrf": token, "current": "secret"}
    r = await c.go("POST", "/ui/me/ssh", {**form, "keys": "ssh-ed25519 AAAAbroken x"})
    assert r.status == 400
    r = await c.go(
        "POST",
        "/ui/me/ssh",
        {**form, "keys": ed25519_line(1) + "\n\n" + ed25519_line(2, "<b>work</b>")},
    )
    assert r.status == 303
    alice = await directory.get("alice")
    assert alice is not None
    assert len(alice.ssh_keys) == 2
    page = await c.go("GET", "/ui/me")
    assert b"&lt;b&gt;work&lt;/b&gt;" in page.body
    r = await c.go("POST", "/ui/me/ssh", {**form, "keys": ""})
    assert r.status == 303
    alice = await directory.get("alice")
    assert alice is not None
    assert alice.ssh_keys == ()


async def test_profile_fields_follow_the_mail_gateways_rules(
    served: Served, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    token = token_of((await c.go("GET", "/ui/me")).body)
    r = await c.go("POST", "/ui/me/profile", {"csrf": token, "profile.c": "Germany"})
    assert r.status == 400
    assert b"two-letter" in r.body
    r = await c.go(
        "POST",
        "/ui/me/profile",
        {"csrf": token, "profile.c": "de", "profile.ircnick": "alice_", "profile.l": "Berlin"},
    )
    assert r.status == 303
    alice = await directory.get("alice")
    assert alice is not None
    assert alice.profile.c == "DE"
    assert alice.profile.irc_nick == "alice_"
    r = await c.go("POST", "/ui/me/profile", {"csrf": token, "profile.c": "DE"})
    assert r.status == 303
    alice = await directory.get("alice")
    assert alice is not None
    assert alice.profile.irc_nick is None  # cleared: the box was sent empty (absent)
    assert alice.profile.c == "DE"


@pytest.fixture(scope="module")
def pgp_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(armoured public key, fingerprint) made by the real gpg."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    run = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    subprocess.run(
        [*run, "--passphrase", "", "--quick-gen-key", "Alice <alice@example.com>", "ed25519"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    armored = subprocess.run(
        [*run, "--armor", "--export", "alice@example.com"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    listing = subprocess.run(
        [*run, "--with-colons", "--fingerprint", "alice@example.com"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    return armored, fpr


def test_the_openpgp_fingerprint_is_the_one_gpg_prints(pgp_key: tuple[str, str]) -> None:
    armored, fpr = pgp_key
    assert openpgp_fingerprint(armored) == fpr
    damaged = armored.replace(armored.splitlines()[3][:8], "AAAAAAAA", 1)
    with pytest.raises(FieldError, match="checksum"):
        openpgp_fingerprint(damaged)
    with pytest.raises(FieldError, match="private key"):
        openpgp_fingerprint("-----BEGIN PGP PRIVATE KEY BLOCK-----\n...")
    with pytest.raises(FieldError, match="exactly one"):
        openpgp_fingerprint("hello")


async def test_a_user_sets_their_openpgp_key(
    served: Served, directory: MemoryDirectory, pgp_key: tuple[str, str]
) -> None:
    armored, fpr = pgp_key
    c = Client(served)
    await c.user_login("alice", "secret")
    token = token_of((await c.go("GET", "/ui/me")).body)
    form = {"csrf": token, "current": "secret"}
    r = await c.go("POST", "/ui/me/pgp", {**form, "key": "not a key"})
    assert r.status == 400
    r = await c.go("POST", "/ui/me/pgp", {**form, "key": armored})
    assert r.status == 303
    alice = await directory.get("alice")
    assert alice is not None
    assert alice.pgp_fingerprint == fpr


def test_password_policy_names_each_problem() -> None:
    alice = Account(uid="alice", mail="alice@example.com")
    assert password_problem("short", old="x", account=alice, min_length=10)
    assert password_problem("0123456789", old="0123456789", account=alice, min_length=10)
    assert password_problem("ALICE@example.com", old="x", account=alice, min_length=5)
    assert password_problem("Alice", old="x", account=alice, min_length=5)
    assert "NUL" in (
        password_problem("long enough\x00", old="x", account=alice, min_length=5) or ""
    )
    assert password_problem("a good password", old="x", account=alice, min_length=10) is None


async def test_stats_count_logins_by_result(served: Served, engine: Engine) -> None:
    c = Client(served)
    await c.admin_login()
    await engine.authenticate(attempt("alice", "secret"))
    await engine.authenticate(attempt("alice", "wrong"))
    r = await c.go("GET", "/ui/admin/stats")
    assert r.status == 200
    got = r.json()["results"]
    assert got["accepted"] >= 1
    assert got["denied"] >= 1


async def test_static_files_and_unknown_pages(served: Served) -> None:
    c = Client(served)
    r = await c.go("GET", "/ui/static/chart.js")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert (await c.go("GET", "/ui/static/../../config.py")).status == 404
    assert (await c.go("GET", "/ui/nothing")).status == 404


async def test_over_tls_the_cookies_are_secure(
    engine: Engine, directory: MemoryDirectory, tmp_path: Path
) -> None:
    pem = make_cert(tmp_path)
    config = dataclasses.replace(WEB_CONFIG, tls_cert=str(pem.cert), tls_key=str(pem.key))
    running = await start_http(engine, config, resolve=Path)
    try:
        host, port = running.addresses[0]
        context = ssl.create_default_context(cafile=str(pem.cert))

        def fetch() -> str:
            with urllib.request.urlopen(
                f"https://localhost:{port}/ui/admin/login", context=context, timeout=10
            ) as resp:
                return str(resp.headers["set-cookie"])

        cookie = await asyncio.to_thread(fetch)
    finally:
        await running.close()
    assert "Secure" in [part.strip() for part in cookie.split(";")]
    assert host == "127.0.0.1"


def test_an_unreadable_or_short_session_secret_file_is_a_config_error(tmp_path: Path) -> None:
    config = dataclasses.replace(WEB_CONFIG, session_secret_file="absent.key")
    with pytest.raises(ConfigError) as missing:
        load_secret(config, base=tmp_path)
    assert missing.value.key == "http.session_secret_file"
    (tmp_path / "short.key").write_text("tooshort\n")
    with pytest.raises(ConfigError, match="fewer than 16 bytes"):
        load_secret(dataclasses.replace(config, session_secret_file="short.key"), base=tmp_path)
    (tmp_path / "good.key").write_text("0123456789abcdef0123456789abcdef\n")
    good = dataclasses.replace(config, session_secret_file=str(tmp_path / "good.key"))
    assert load_secret(good, base=Path("/nonexistent")) == b"0123456789abcdef0123456789abcdef"
    assert load_secret(WEB_CONFIG, base=tmp_path) != load_secret(WEB_CONFIG, base=tmp_path)


async def test_the_openpgp_key_goes_into_the_gateways_keyring_when_it_exists(
    make_engine: EngineFactory,
    directory: MemoryDirectory,
    pgp_key: tuple[str, str],
    tmp_path: Path,
) -> None:
    armored, fpr = pgp_key
    home = tmp_path / "keyring"
    home.mkdir(mode=0o700)
    engine = make_engine(
        make_config(passwords={"scheme": "SHA512-CRYPT"}, mailgate={"gnupg_home": str(home)})
    )
    async with web_site(engine, directory, scheme="SHA512-CRYPT") as site:
        c = Client(site)
        await c.user_login("alice", "secret")
        token = token_of((await c.go("GET", "/ui/me")).body)
        form = {"csrf": token, "key": armored, "current": "secret"}
        r = await c.go("POST", "/ui/me/pgp", form)
        assert r.status == 303
    listing = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--fingerprint"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    assert f"fpr:::::::::{fpr}:" in listing
    alice = await directory.get("alice")
    assert alice is not None
    assert alice.pgp_fingerprint == fpr


async def test_with_the_page_switched_off_every_ui_path_is_404(
    engine: Engine, directory: MemoryDirectory
) -> None:
    config = dataclasses.replace(WEB_CONFIG, web_enabled=False)
    running = await start_http(engine, config, resolve=Path)
    try:
        for path in ("/ui/", "/ui/login", "/ui/static/style.css", "/ui/admin/login"):
            assert (await request(running, "GET", path)).status == 404, path
    finally:
        await running.close()


async def test_a_user_opening_an_admin_page_keeps_their_session(served: Served) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    r = await c.go("GET", "/ui/admin/accounts")
    assert r.status == 303
    assert r.headers["location"] == "/ui/admin/login"
    assert "set-cookie" not in r.headers
    assert (await c.go("GET", "/ui/me")).status == 200


async def test_a_form_with_raw_non_ascii_or_too_many_fields_is_refused_unread(
    served: Served,
) -> None:
    c = Client(served)
    token = await c.form_token("/ui/login")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": c.cookie_header()}
    raw = f"csrf={token}&username=al\u00efce&password=x".encode()
    r = await request(served.server, "POST", "/ui/login", raw, headers=headers)
    assert r.status == 400 and b"could not be read" in r.body
    many = urlencode({"csrf": token, **{f"f{i}": "x" for i in range(600)}}).encode()
    r = await request(served.server, "POST", "/ui/login", many, headers=headers)
    assert r.status == 400 and b"could not be read" in r.body
    encoded = urlencode({"csrf": token, "username": "al\u00efce", "password": "x"}).encode()
    r = await request(served.server, "POST", "/ui/login", encoded, headers=headers)
    assert r.status == 400 and b"invalid login" in r.body


async def test_a_user_makes_and_revokes_app_passwords_and_none_opens_the_page(
    served: Served, engine: Engine, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    page = await c.go("GET", "/ui/me")
    assert b'id="no-app-passwords"' in page.body
    form = {"csrf": token_of(page.body), "name": "<b>phone</b>", "service.imap": "on"}
    r = await c.go("POST", "/ui/me/app-passwords", {**form, "current": "wrong"})
    assert r.status == 400 and b"current password is not right" in r.body
    r = await c.go("POST", "/ui/me/app-passwords", {**form, "current": "secret"})
    assert r.status == 200, r.body
    assert r.headers["cache-control"] == "no-store"
    found = re.search(rb'id="app-password-value">(mwa_[a-z2-7]{24})<', r.body)
    assert found is not None, r.body
    value = found.group(1).decode()
    assert isinstance(await engine.authenticate(attempt("alice", value)), Accepted)
    assert isinstance(await engine.authenticate(attempt("alice", value, service="pop3")), Denied)
    page = await c.go("GET", "/ui/me")
    assert b"&lt;b&gt;phone&lt;/b&gt;" in page.body and value.encode() not in page.body
    # An app password never signs in to the page.
    other = Client(served)
    refused = await other.user_login("alice", value)
    assert refused.status == 400 and b"invalid login" in refused.body

    alice = await directory.get("alice")
    assert alice is not None
    (app,) = alice.app_passwords
    r = await c.go(
        "POST", "/ui/me/app-passwords/revoke", {"csrf": token_of(page.body), "id": app.id}
    )
    assert r.status == 303
    assert await engine.authenticate(attempt("alice", value)) == Denied(
        reason=DenyReason.CREDENTIALS
    )
    assert b'id="no-app-passwords"' in (await c.go("GET", "/ui/me")).body


async def test_an_administrator_lists_makes_and_revokes_an_accounts_app_passwords(
    served: Served, engine: Engine, directory: MemoryDirectory
) -> None:
    c = Client(served)
    await c.admin_login()
    page = await c.go("GET", "/ui/admin/account?uid=alice")
    assert b'id="no-app-passwords"' in page.body
    token = token_of(page.body)
    form = {"uid": "alice", "name": "phone", "service.imap": "on", "expires": "2031-01-31"}
    r = await c.go("POST", "/ui/admin/app-passwords", form)  # no CSRF token
    assert r.status == 403
    r = await c.go("POST", "/ui/admin/app-passwords", {"csrf": token, **form})
    assert r.status == 200 and r.headers["cache-control"] == "no-store"
    found = re.search(rb'id="app-password-value">(mwa_[a-z2-7]{24})<', r.body)
    assert found is not None, r.body
    value = found.group(1).decode()
    assert isinstance(await engine.authenticate(attempt("alice", value)), Accepted)
    alice = await directory.get("alice")
    assert alice is not None
    (app,) = alice.app_passwords
    page = await c.go("GET", "/ui/admin/account?uid=alice")
    listing = page.body.split(b'id="app-passwords"')[1].split(b"</table>")[0]
    created = utc(app.created).encode()
    for shown in (b"phone", b"imap", b"2031-02-01 00:00 UTC", created, b"never"):
        assert shown in listing, shown
    assert value.encode() not in page.body and app.digest.encode() not in page.body
    revoke = {"uid": "alice", "id": app.id}
    assert (await c.go("POST", "/ui/admin/app-passwords/revoke", revoke)).status == 403
    assert (await directory.get("alice")) == alice
    r = await c.go("POST", "/ui/admin/app-passwords/revoke", {"csrf": token, **revoke})
    assert r.status == 303
    assert r.headers["location"] == "/ui/admin/account?uid=alice&done=app-password-revoked"
    assert await engine.authenticate(attempt("alice", value)) == Denied(
        reason=DenyReason.CREDENTIALS
    )
    page = await c.go("GET", r.headers["location"])
    assert b'id="no-app-passwords"' in page.body and b"was revoked" in page.body
    assert served.staff is not None
    entries = await served.staff.audit.entries(AuditQuery(target="alice"))
    assert [(e.actor, e.fields) for e in entries][:2] == [
        ("admin:admin", ("app_passwords",)),
        ("admin:admin", ("app_passwords",)),
    ]


async def test_helpdesk_sees_app_passwords_but_may_not_make_or_revoke_them(
    served: Served, engine: Engine, directory: MemoryDirectory
) -> None:
    admin = served.web.admin
    assert served.staff is not None and admin is not None
    await add_admin(served.staff.store, "hal", role="helpdesk")
    new = await admin.add_app_password("alice", name="laptop")
    c = Client(served)
    await c.admin_login(name="hal")
    page = await c.go("GET", "/ui/admin/account?uid=alice")
    assert page.status == 200 and b"laptop" in page.body
    assert f'id="revoke-{new.app_password.id}"'.encode() not in page.body
    assert b'id="add-app-password"' not in page.body
    token = token_of(page.body)
    for path, form in (
        ("/ui/admin/app-passwords/revoke", {"uid": "alice", "id": new.app_password.id}),
        ("/ui/admin/app-passwords", {"uid": "alice", "name": "mine"}),
    ):
        assert (await c.go("POST", path, {"csrf": token, **form})).status == 403, path
    alice = await directory.get("alice")
    assert alice is not None and [a.name for a in alice.app_passwords] == ["laptop"]
