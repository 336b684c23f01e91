"""The administrators' account list, account form and chart data, over the real listener.

The list: natural order, sorting, paging and ``mailwarden user list``'s patterns, with
a bound on the matches read. The form: quota in units, what was typed kept after a
refusal with the message by its box, the fields added to it (uid/gid, master,
networks, extra passdb/userdb fields) and their audit entries. The chart's data:
the last hour by service and outcome, from logins made before the page asked.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.web import accountlist
from mailwarden.metrics import Metrics
from mailwarden.model import Accepted, Account, AccountStatus, Denied, Listed
from mailwarden.state.base import AuditQuery
from tests.frontends.test_web import Client, Served, token_of, web_site
from tests.helpers import attempt, hashed

G = 1024**3


@pytest_asyncio.fixture
async def site(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[Served]:
    """alice (tests/conftest.py) and user1..user120, user7 disabled and the tens on
    host imap2; logins counted by a Metrics of its own."""
    await directory.bulk_upsert(
        [
            Account(
                uid=f"user{i}",
                mail=f"u{i}@example.org",
                password=hashed("secret"),
                status=AccountStatus.DISABLED if i == 7 else AccountStatus.ACTIVE,
                mail_host="imap2" if i % 10 == 0 else None,
            )
            for i in range(1, 121)
        ],
        replace=False,
    )
    engine.metrics = Metrics()
    async with web_site(engine, directory, metrics=engine.metrics) as served:
        yield served


async def signed_in(site: Served) -> Client:
    c = Client(site)
    r = await c.admin_login()
    assert r.status == 303, r.body
    return c


def uids(page: bytes) -> list[str]:
    return [
        html.unescape(u) for u in re.findall(r'<tr><td><a href="[^"]*">([^<]+)</a>', page.decode())
    ]


def box(page: bytes, name: str) -> str:
    """The value of the text box ``name`` (or the text of the text area)."""
    text = page.decode()
    m = re.search(rf'<input type="text" id="[^"]*" name="{re.escape(name)}" value="([^"]*)"', text)
    if m is None:
        m = re.search(
            rf'<textarea id="[^"]*" name="{re.escape(name)}"[^>]*>([^<]*)</textarea>', text
        )
    assert m is not None, name
    return html.unescape(m.group(1))


async def test_the_list_pages_through_every_account_in_natural_order(site: Served) -> None:
    c = await signed_in(site)
    first = await c.go("GET", "/ui/admin/accounts?q=user*&size=25")
    assert first.status == 200
    assert uids(first.body) == [f"user{i}" for i in range(1, 26)]
    assert b"120 account(s), showing 1\xe2\x80\x9325." in first.body
    assert b"page 1 of 5" in first.body
    seen: list[str] = []
    for number in range(1, 6):
        page = await c.go("GET", f"/ui/admin/accounts?q=user*&size=25&page={number}")
        seen += uids(page.body)
    assert seen == [f"user{i}" for i in range(1, 121)]
    # A page that is gone (accounts deleted meanwhile) shows the last one.
    beyond = await c.go("GET", "/ui/admin/accounts?q=user*&size=25&page=9")
    assert uids(beyond.body) == [f"user{i}" for i in range(101, 121)]


async def test_each_column_sorts_both_ways_with_the_uid_breaking_ties(site: Served) -> None:
    c = await signed_in(site)
    down = await c.go("GET", "/ui/admin/accounts?q=user*&sort=uid&dir=desc&size=25")
    assert uids(down.body)[:3] == ["user120", "user119", "user118"]
    by_status = await c.go("GET", "/ui/admin/accounts?q=user*&sort=status&dir=desc")
    assert uids(by_status.body)[0] == "user7"
    by_host = await c.go("GET", "/ui/admin/accounts?q=user*&sort=mail_host&dir=desc&size=25")
    assert uids(by_host.body)[:12] == [f"user{i}" for i in range(10, 121, 10)]
    by_mail = await c.go("GET", "/ui/admin/accounts?q=*@example.org&sort=mail&size=25")
    assert uids(by_mail.body)[:3] == ["user1", "user2", "user3"]
    # The heading of the current column links to the other direction.
    assert (
        b'id="sort-uid" href="?q=user%2A&amp;sort=uid&amp;dir=desc'
        in (await c.go("GET", "/ui/admin/accounts?q=user*")).body
    )


async def test_the_search_is_user_lists_pattern_and_finds_what_it_finds(
    site: Served, directory: MemoryDirectory
) -> None:
    c = await signed_in(site)
    for pattern, expected in (
        ("user1?", [f"user{i}" for i in range(10, 20)]),
        ("user1", ["user1"]),  # no wildcard: the whole uid or address
        ("u12@example.org", ["user12"]),
        ("*@EXAMPLE.com", ["alice"]),
        ("nobody*", []),
    ):
        page = await c.go("GET", f"/ui/admin/accounts?q={pattern}&size=200")
        assert uids(page.body) == expected, pattern
        cli = [item.uid async for item in directory.listing(pattern)]
        assert sorted(cli, key=accountlist.natural_key) == expected
    everyone = await c.go("GET", "/ui/admin/accounts?size=200")
    assert b"121 account(s)" in everyone.body  # alice and the 120


async def test_more_matches_than_the_bound_are_not_read_and_the_page_says_so(
    site: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accountlist, "MAX_SCAN", 50)
    read: list[str] = []
    admin = site.web.admin
    assert admin is not None
    listing = admin.listing

    async def counted(pattern: str = "*") -> AsyncIterator[Listed]:
        async for item in listing(pattern):
            read.append(item.uid)
            yield item

    monkeypatch.setattr(admin, "listing", counted)
    c = await signed_in(site)
    page = await c.go("GET", "/ui/admin/accounts?q=user*&size=25")
    assert b"More than 50 accounts match" in page.body
    assert len(read) == 51  # the one that shows there are more, and no other
    assert b"page 1 of 2" in page.body


async def test_a_read_that_takes_too_long_is_stopped_and_the_page_says_so(
    site: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pattern few accounts match makes the directory test every account; a page
    shows what was read within its time (here a directory that stops answering)."""
    monkeypatch.setattr(accountlist, "SCAN_SECONDS", 0.05)
    admin = site.web.admin
    assert admin is not None

    async def stalls(pattern: str = "*") -> AsyncIterator[Listed]:
        for uid in ("user3", "user20", "user1"):
            yield Listed(uid=uid)
        await asyncio.Event().wait()  # never set: only the page's time limit ends it
        yield Listed(uid="never")

    monkeypatch.setattr(admin, "listing", stalls)
    c = await signed_in(site)
    page = await c.go("GET", "/ui/admin/accounts?q=*rare*")
    assert page.status == 200
    assert b"Reading the matches was stopped after 0.05 s, at 3:" in page.body
    assert uids(page.body) == ["user1", "user3", "user20"]


async def edit(c: Client, uid: str, **changes: str) -> tuple[int, bytes]:
    """Post the account's form as shown, with ``changes`` (a value ``-``: the box is
    left out, as a browser leaves out a checkbox not ticked)."""
    page = await c.go("GET", f"/ui/admin/account?uid={uid}")
    form = {"csrf": token_of(page.body), "uid": uid}
    for name in (
        "mail",
        "alternate_addresses",
        "home",
        "mail_location",
        "mail_host",
        "quota_bytes",
        "quota_messages",
        "uid_number",
        "gid_number",
        "allow_nets",
        "passdb_fields",
        "userdb_fields",
    ):
        form[name] = box(page.body, name)
    form["status"] = "active"
    for name in ("imap", "pop3", "smtp", "submission", "sieve", "lmtp", "web"):
        form[f"service.{name}"] = "on"
    form.update(changes)
    r = await c.go("POST", "/ui/admin/account", {k: v for k, v in form.items() if v != "-"})
    return r.status, r.body


async def test_the_quota_is_shown_in_units_and_read_in_units_or_bytes(
    site: Served, directory: MemoryDirectory
) -> None:
    c = await signed_in(site)
    page = await c.go("GET", "/ui/admin/account?uid=alice")
    assert box(page.body, "quota_bytes") == "1000000"  # not a whole number of K
    for typed, stored, shown in (
        ("2G", 2 * G, "2G"),
        ("1.5g", 3 * G // 2, "1.5G"),
        ("500M", 500 * 1024**2, "500M"),
        ("1048576", 1024**2, "1M"),
        ("", None, ""),
    ):
        status, _ = await edit(c, "alice", quota_bytes=typed)
        assert status == 303, typed
        alice = await directory.get("alice")
        assert alice is not None and alice.quota_bytes == stored
        page = await c.go("GET", "/ui/admin/account?uid=alice")
        assert box(page.body, "quota_bytes") == shown


async def test_a_refused_value_keeps_everything_typed_with_the_reason_by_its_box(
    site: Served, directory: MemoryDirectory
) -> None:
    c = await signed_in(site)
    before = await directory.get("user5")
    status, body = await edit(
        c,
        "user5",
        home="/srv/typed/home",
        quota_bytes="2 lots",
        allow_nets="192.0.2.0/24, not-a-network",
        userdb_fields="mail_plugins=quota\n=no name",
        master="on",
    )
    assert status == 400
    assert box(body, "home") == "/srv/typed/home"
    assert box(body, "quota_bytes") == "2 lots"
    assert box(body, "allow_nets") == "192.0.2.0/24, not-a-network"
    assert box(body, "userdb_fields") == "mail_plugins=quota\n=no name"
    assert b'id="master" checked' in body
    text = body.decode()
    for ident, message in (
        ("quota_bytes", "quota_bytes: expected a size"),
        ("allow_nets", "allow_nets: &#x27;not-a-network&#x27; is not a network"),
        ("userdb_fields", "userdb_fields: line 2 has no field name"),
    ):
        assert re.search(rf'id="{ident}-error" role="alert">{re.escape(message)}', text), ident
    assert 'id="home-error"' not in text
    assert await directory.get("user5") == before  # nothing saved


async def test_a_refusal_of_the_changes_together_is_shown_above_the_form(
    site: Served, directory: MemoryDirectory
) -> None:
    c = await signed_in(site)
    # Each address is fine alone; the other account already has this one.
    status, body = await edit(c, "user5", mail="u6@example.org", home="/srv/five")
    assert status == 400
    assert b'class="error" role="alert"' in body
    assert box(body, "mail") == "u6@example.org" and box(body, "home") == "/srv/five"
    user5 = await directory.get("user5")
    assert user5 is not None and user5.mail == "u5@example.org"


async def test_uid_gid_master_networks_and_extra_fields_are_edited_and_audited(
    site: Served, directory: MemoryDirectory, engine: Engine
) -> None:
    c = await signed_in(site)
    status, body = await edit(
        c,
        "user5",
        uid_number="5005",
        gid_number="6006",
        master="on",
        allow_nets="192.0.2.0/24, local",
        passdb_fields="nodelay\nreason=kept",
        userdb_fields="mail_plugins=quota\nsieve=~/.sieve",
    )
    assert status == 303, body
    user5 = await directory.get("user5")
    assert user5 is not None
    assert (user5.uid_number, user5.gid_number, user5.master) == (5005, 6006, True)
    assert user5.allow_nets == ("192.0.2.0/24", "local")
    assert dict(user5.passdb_fields) == {"nodelay": "", "reason": "kept"}
    assert dict(user5.userdb_fields) == {"mail_plugins": "quota", "sieve": "~/.sieve"}
    page = await c.go("GET", "/ui/admin/account?uid=user5")
    assert box(page.body, "passdb_fields") == "nodelay\nreason=kept"
    assert box(page.body, "uid_number") == "5005"
    assert b'id="master" checked' in page.body
    # The networks take effect: a login from elsewhere is refused.
    assert isinstance(await engine.authenticate(attempt("user5", remote_ip="192.0.2.8")), Accepted)
    outside = await engine.authenticate(attempt("user5", remote_ip="198.51.100.1"))
    assert isinstance(outside, Denied)
    # A line removed is a field removed; the master flag unticked is off.
    status, _ = await edit(c, "user5", passdb_fields="reason=kept", master="-", allow_nets="")
    assert status == 303
    user5 = await directory.get("user5")
    assert user5 is not None
    assert dict(user5.passdb_fields) == {"reason": "kept"}
    assert not user5.master and user5.allow_nets == ()
    assert site.staff is not None
    entries = await site.staff.audit.entries(AuditQuery(target="user5"))
    assert [e.action for e in entries] == ["account.update", "account.update"]
    second, first = sorted((set(e.fields) for e in entries), key=len)
    assert first >= {
        "uid_number",
        "gid_number",
        "master",
        "allow_nets",
        "passdb_fields",
        "userdb_fields",
    }
    assert second == {"master", "allow_nets", "passdb_fields"}


async def test_a_form_saved_unchanged_changes_nothing(
    site: Served, directory: MemoryDirectory
) -> None:
    c = await signed_in(site)
    before = await directory.get("alice")
    status, _ = await edit(c, "alice", **{"service.pop3": "on"})
    assert status == 303
    assert await directory.get("alice") == before
    assert site.staff is not None
    assert await site.staff.audit.entries(AuditQuery(target="alice")) == []


async def test_the_chart_data_hold_the_hour_before_the_page_asked(
    site: Served, engine: Engine
) -> None:
    for _ in range(3):
        await engine.authenticate(attempt("alice", service="imap"))
    await engine.authenticate(attempt("alice", "wrong", service="smtp"))
    c = await signed_in(site)
    r = await c.go("GET", "/ui/admin/stats")
    assert r.status == 200
    series = r.json()["series"]
    assert (series["step"], series["buckets"]) == (10, 360)
    assert series["outcomes"] == ["accepted", "denied", "blocked", "unavailable"]
    assert sum(series["counts"]["imap"]["accepted"]) == 3
    assert sum(series["counts"]["smtp"]["denied"]) == 1
    assert all(len(row) == 360 for o in series["counts"].values() for row in o.values())
