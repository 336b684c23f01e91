"""The web page's administrators: bootstrap, sign-in with TOTP, enrolment, roles, the
audit log, and an account holder's second factor (frontends/web/staffpages.py)."""

from __future__ import annotations

import re

from mailwarden.accounts import totp
from mailwarden.accounts.staff import USER_OWNER
from mailwarden.auth.engine import Engine
from mailwarden.config import GuardRule
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.model import Accepted
from mailwarden.state.base import AuditQuery
from tests.conftest import EngineFactory
from tests.frontends.test_web import WEB_CONFIG, Client, Served, token_of, web_site
from tests.helpers import attempt, make_config
from tests.staffing import ADMIN_PASSWORD, add_admin, admin_code

PW = "a long password"


def secret_of(page: bytes) -> str:
    m = re.search(rb'id="secret">([A-Z2-7]+)<', page)
    assert m is not None, page
    return m.group(1).decode()


def now_code(served: Served, secret: str) -> str:
    return totp.code_at(secret, int(served.clock.now // totp.STEP))


async def test_the_bootstrap_token_opens_only_the_first_administrators_page(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        assert served.staff is not None
        await served.staff.store.remove_admin("admin")  # a new site: nobody yet
        c = Client(served)
        r = await c.admin_login(WEB_CONFIG.admin_token, code="")
        assert r.status == 303 and r.headers["location"] == "/ui/admin/first"
        assert (await c.go("GET", "/ui/admin/accounts")).status == 303  # nothing else
        page = await c.go("GET", "/ui/admin/first")
        form = {"csrf": token_of(page.body), "name": "ann", "password": "a long password"}
        r = await c.go("POST", "/ui/admin/first", {**form, "password2": "a long password"})
        assert r.status == 303 and r.headers["location"] == "/ui/admin/login?done=first"
        # Closed now: the token signs in as nobody.
        r = await c.admin_login(WEB_CONFIG.admin_token, code="")
        assert r.status == 400 and b"invalid login" in r.body
        # Ann's password alone opens the enrolment, and nothing else.
        r = await c.admin_login("a long password", name="ann", code="")
        assert r.headers["location"] == "/ui/admin/enrol"
        assert (await c.go("GET", "/ui/admin/accounts")).status == 303
        page = await c.go("GET", "/ui/admin/enrol")
        assert b"<svg" in page.body
        secret = secret_of(page.body)
        r = await c.go(
            "POST",
            "/ui/admin/enrol",
            {"csrf": token_of(page.body), "code": now_code(served, secret)},
        )
        codes = re.findall(rb"<li>([a-z2-7]{5}-[a-z2-7]{5})</li>", r.body)
        assert r.status == 200 and len(codes) == 10
        assert (await c.go("GET", "/ui/admin/accounts")).status == 200
        actions = [e.action for e in await served.staff.audit.entries(AuditQuery())]
        assert actions[:2] == ["totp.enrol", "bootstrap.refused"]
        assert "admin.add" in actions and "bootstrap.use" in actions


async def test_an_administrator_needs_a_fresh_code_every_time(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        c = Client(served)
        r = await c.admin_login(code="")
        assert r.status == 400 and b"authenticator" in r.body
        ok = await c.admin_login()
        assert ok.status == 303 and ok.headers["location"] == "/ui/admin/accounts"
        # The same code again (same time step) is refused.
        c2 = Client(served)
        token = await c2.form_token("/ui/admin/login")

        r = await c2.go(
            "POST",
            "/ui/admin/login",
            {
                "csrf": token,
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "code": admin_code(served.clock.now),
            },
        )
        assert r.status == 400


async def test_helpdesk_reads_resets_and_unblocks_but_cannot_manage_or_delete(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        assert served.staff is not None
        await add_admin(served.staff.store, "hal", role="helpdesk")
        c = Client(served)
        await c.admin_login(name="hal")
        assert (await c.go("GET", "/ui/admin/accounts")).status == 200
        assert (await c.go("GET", "/ui/admin/audit")).status == 200
        page = await c.go("GET", "/ui/admin/admins")
        assert page.status == 200 and b'id="add"' not in page.body
        token = token_of(page.body)
        r = await c.go("POST", "/ui/admin/password", {"csrf": token, "uid": "alice"})
        assert r.status == 200 and b'id="generated"' in r.body
        for path, form in (
            (
                "/ui/admin/admins",
                {"op": "add", "name": "eve", "password": PW, "role": "admin"},
            ),
            ("/ui/admin/admins", {"op": "role", "name": "hal", "role": "admin"}),
            ("/ui/admin/tokens", {"op": "create", "name": "t", "scope": "admin"}),
            ("/ui/admin/new", {"uid": "mallory"}),
            ("/ui/admin/reset-totp", {"uid": "alice"}),
        ):
            r = await c.go("POST", path, {"csrf": token, **form})
            assert r.status == 403, path
        assert await served.staff.store.admin("eve") is None
        hal = await served.staff.store.admin("hal")
        assert hal is not None and hal.role == "helpdesk"
        assert await directory.get("mallory") is None
        entries = await served.staff.audit.entries(AuditQuery(target="alice"))
        assert [(e.actor, e.action) for e in entries] == [("admin:hal", "account.password")]


async def test_an_admin_creates_a_token_shown_once_and_revokes_it(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        c = Client(served)
        await c.admin_login()
        token = await c.form_token("/ui/admin/tokens")
        r = await c.go(
            "POST",
            "/ui/admin/tokens",
            {"csrf": token, "op": "create", "name": "ci", "scope": "read", "days": "30"},
        )
        m = re.search(rb'id="token">(mwt_[a-z2-7]{24})<', r.body)
        assert r.status == 200 and m is not None
        listing = await c.go("GET", "/ui/admin/tokens")
        assert b"ci" in listing.body and m.group(1) not in listing.body
        r = await c.go("POST", "/ui/admin/tokens", {"csrf": token, "op": "revoke", "name": "ci"})
        assert r.status == 200
        assert served.staff is not None
        assert [t.name for t in await served.staff.tokens()] == ["admin", "helpdesk", "read"]


async def test_a_user_turns_on_totp_and_then_needs_a_code_to_sign_in(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        assert served.staff is not None
        c = Client(served)
        await c.user_login("alice", "secret")
        page = await c.go("GET", "/ui/me/totp")
        secret = secret_of(page.body)
        r = await c.go(
            "POST",
            "/ui/me/totp",
            {"csrf": token_of(page.body), "op": "confirm", "code": now_code(served, secret)},
        )
        codes = re.findall(rb"<li>([a-z2-7]{5}-[a-z2-7]{5})</li>", r.body)
        assert len(codes) == 10
        assert await served.staff.factor_confirmed(USER_OWNER + "alice")

        other = Client(served)
        r = await other.user_login("alice", "secret")
        assert r.status == 400 and b"authenticator" in r.body
        served.clock.now += totp.STEP
        token = await other.form_token("/ui/login")
        r = await other.go(
            "POST",
            "/ui/login",
            {
                "csrf": token,
                "username": "alice",
                "password": "secret",
                "code": now_code(served, secret),
            },
        )
        assert r.status == 303 and r.headers["location"] == "/ui/me"
        # Mail logins are never asked for a code.

        assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)

        # An administrator resets it; the password alone opens the page again.
        admin = Client(served)
        await admin.admin_login()
        token = await admin.form_token("/ui/admin/account?uid=alice")
        r = await admin.go("POST", "/ui/admin/reset-totp", {"csrf": token, "uid": "alice"})
        assert r.status == 303
        assert not await served.staff.factor_confirmed(USER_OWNER + "alice")
        r = await Client(served).user_login("alice", "secret")
        assert r.status == 303
        entries = await served.staff.audit.entries(AuditQuery(target="alice"))
        assert [(e.actor, e.action) for e in entries][:2] == [
            ("admin:admin", "totp.reset"),
            ("user:alice", "totp.enrol"),
        ]


async def test_wrong_administrator_passwords_get_the_address_banned(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """The guard counts administrators' sign-ins like mail logins: here loopback is
    not allow-listed, three failures ban it, and then the right password is refused
    with the same page. An unknown name and a wrong password get identical pages."""
    rules = (GuardRule(name="ip", period=60.0, threshold=3),)
    guard = {"allow_networks": (), "rules": rules, "account_threshold": 0}
    engine = make_engine(make_config(passwords={"scheme": "SHA512-CRYPT"}, guard=guard))
    # The middle of one 60 s window: three failures straddling a window's end would
    # count 2.99 in the sliding estimate, and the ban would depend on the wall clock.
    engine.guard.clock = lambda: 60.0 * 30_000_000 + 30.0
    async with web_site(engine, directory) as served:
        c = Client(served)
        unknown = await c.admin_login("guess 1", name="nobody")
        wrong = await c.admin_login("guess 2")
        assert unknown.status == wrong.status == 400
        assert unknown.body == wrong.body and b"invalid login" in wrong.body
        await c.admin_login("guess 3")
        assert [b.target for b in await engine.guard.bans()] == ["127.0.0.1/32"]
        refused = await c.admin_login()
        assert refused.status == 400 and refused.body == wrong.body
        assert "mw_session" not in c.cookies
        await engine.guard.unblock("127.0.0.1")
        assert (await c.admin_login()).status == 303


async def test_the_navigation_shows_each_role_only_the_pages_it_may_open(
    engine: Engine, directory: MemoryDirectory
) -> None:
    async with web_site(engine, directory) as served:
        assert served.staff is not None
        await add_admin(served.staff.store, "hal", role="helpdesk")
        links: dict[str, list[bytes]] = {}
        for name in ("admin", "hal"):
            c = Client(served)
            await c.admin_login(name=name)
            page = await c.go("GET", "/ui/admin/accounts")
            nav = page.body.split(b"<nav>")[1].split(b"</nav>")[0]
            links[name] = re.findall(rb'<a href="(/ui/admin/[^"]+)"', nav)
            for href in links[name]:
                assert (await c.go("GET", href.decode())).status == 200, (name, href)
        assert len(links["admin"]) == 7 and b"/ui/admin/new" in links["admin"]
        assert links["hal"] == [h for h in links["admin"] if h != b"/ui/admin/new"]
        hal = Client(served)
        await hal.admin_login(name="hal")
        assert (await hal.go("GET", "/ui/admin/new")).status == 403
