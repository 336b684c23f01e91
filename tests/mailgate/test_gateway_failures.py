"""The gateway when something fails half-way: nothing lost, nothing done twice, no lock-out.

Real failures, no mocks: the directory's write lock held by another SQLite
connection (reads go on, the gateway's write times out: DirectoryUnavailable),
a ``sendmail`` that exits 75 as an MTA that cannot queue does, and an SMTP port
where nothing listens (the MTA is down). After each failure the same message is
delivered again, as the MTA does after exit 75. Last, hostile MIME structure:
dropped with a log line, no reply, exit 0.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.accounts.openpgp import Verifier
from mailwarden.config import MailgateConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.mailgate import mime
from mailwarden.mailgate.gateway import Function, Gateway
from mailwarden.mailgate.replay import ReplayCache, Window
from mailwarden.model import Account
from tests.conftest import EngineFactory
from tests.helpers import hashed
from tests.mailgate.conftest import DAY, Keys, gpg, mail
from tests.mailgate.test_gateway import Site, body_of, make_site, write_config
from tests.mailgate.test_mime import nested
from tests.peers.conftest import free_port

PHRASE = "Please change my mail password\n"

FAILING_SENDMAIL = """#!/bin/sh
# An MTA that cannot queue: read the message, say so, exit EX_TEMPFAIL.
cat > /dev/null
echo "sendmail: cannot queue: queue file write error" >&2
exit 75
"""


@pytest.fixture
def site(keys: Keys, tmp_path: Path) -> Site:
    return make_site(keys, tmp_path)


@contextlib.contextmanager
def directory_write_locked(site: Site) -> Iterator[None]:
    """Hold the SQLite directory's write lock (another writer mid-transaction)."""
    conn = sqlite3.connect(site.root / "accounts.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def failing_sendmail(site: Site) -> None:
    script = site.root / "failing-sendmail"
    script.write_text(FAILING_SENDMAIL)
    script.chmod(0o755)
    write_config(site, mailer=f'sendmail = "{script}"')


def new_password(keys: Keys, body: str) -> str:
    plain = gpg(keys.world, "--decrypt", stdin=body.encode()).decode()
    return plain.split("is:", 1)[1].split()[0]


def works(site: Site, uid: str, password: str) -> bool:
    return site.cli("auth", "test", uid, password).returncode == 0


# --------------------------------------------------------------------------- change


def test_a_change_whose_directory_write_fails_is_applied_on_the_mta_retry(
    site: Site, keys: Keys
) -> None:
    write_config(site, directory_timeout=0.5)
    raw = mail(keys.clearsign("ircnick: retried\n", keys.alice))
    with directory_write_locked(site):
        done = site.run("change", raw)
    assert done.returncode == 75, done.stderr
    assert site.replies() == []
    assert site.account("alice").profile.irc_nick == "alice-irc"

    done = site.run("change", raw)  # the MTA's retry
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    assert "Changed entry ircNick to retried" in body_of(reply)
    assert "already processed" not in body_of(reply)
    assert site.account("alice").profile.irc_nick == "retried"


def test_a_change_whose_reply_the_mta_refused_is_resent_and_not_applied_twice(
    site: Site, keys: Keys
) -> None:
    failing_sendmail(site)
    raw = mail(keys.clearsign("ircnick: once\n", keys.alice))
    done = site.run("change", raw)
    assert done.returncode == 75, done.stderr
    assert site.account("alice").profile.irc_nick == "once"  # stored, reply pending
    # Edited meanwhile: a second application of the message would undo this.
    assert site.cli("user", "set", "alice", "profile.irc_nick=later").returncode == 0

    write_config(site)  # the MTA works again
    done = site.run("change", raw)
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    assert reply["To"] == "alice@example.org"
    assert "Changed entry ircNick to once" in body_of(reply)
    assert site.account("alice").profile.irc_nick == "later"

    assert site.run("change", raw).returncode == 0  # a third delivery is a replay
    assert "already processed" in body_of(site.replies()[-1])


# --------------------------------------------------------------------------- chpasswd


@pytest.mark.parametrize("mta", ["sendmail exits 75", "SMTP server down"])
def test_chpasswd_while_the_mta_is_down_changes_nothing_and_the_retry_works(
    site: Site, keys: Keys, mta: str
) -> None:
    if mta == "sendmail exits 75":
        failing_sendmail(site)
    else:
        write_config(site, mailer=f'smtp_host = "127.0.0.1"\nsmtp_port = {free_port()}')
    raw = mail(keys.clearsign(PHRASE, keys.alice))
    done = site.run("chpasswd", raw)
    assert done.returncode == 75, done.stderr
    assert site.replies() == []
    assert works(site, "alice", "old-password")  # not locked out

    write_config(site)  # the MTA is back; the MTA delivers the same mail again
    done = site.run("chpasswd", raw)
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    password = new_password(keys, body_of(reply))
    assert works(site, "alice", password)
    assert not works(site, "alice", "old-password")


def test_chpasswd_whose_store_fails_after_the_mail_left_says_so_and_the_retry_works(
    site: Site, keys: Keys
) -> None:
    write_config(site, directory_timeout=0.5)
    raw = mail(keys.clearsign(PHRASE, keys.alice))
    with directory_write_locked(site):
        done = site.run("chpasswd", raw)
    assert done.returncode == 75, done.stderr
    sent, notice = site.replies()
    first = new_password(keys, body_of(sent))
    assert notice["In-Reply-To"] == sent["Message-ID"]
    assert "could not be stored" in body_of(notice) and "old" in body_of(notice)
    assert first not in body_of(notice)
    assert works(site, "alice", "old-password")
    assert not works(site, "alice", first)

    done = site.run("chpasswd", raw)  # the MTA's retry
    assert done.returncode == 0, done.stderr
    latest = site.replies()[-1]
    second = new_password(keys, body_of(latest))
    assert works(site, "alice", second)
    assert not works(site, "alice", "old-password")
    assert not works(site, "alice", first)


async def test_chpasswd_refused_by_the_directory_after_the_mail_left_sends_a_final_notice(
    keys: Keys, tmp_path: Path, make_engine: EngineFactory
) -> None:
    directory = MemoryDirectory()
    await directory.create(
        Account(
            uid="alice",
            mail="alice@example.org",
            password=hashed("old-password"),
            pgp_fingerprint=keys.alice,
        )
    )
    before = await directory.get("alice")
    engine = make_engine(d=directory)
    # A scheme the store refuses: AccountError (final), not a temporary failure.
    admin = AccountAdmin(
        directory=directory, hasher=engine.hasher, engine=engine, default_scheme="NO-SUCH"
    )
    sent: list[EmailMessage] = []
    replay = ReplayCache(tmp_path / "replay.db", Window(max_age=DAY, max_future=DAY, keep=2 * DAY))
    gateway = Gateway(
        config=MailgateConfig(gnupg_home=str(keys.gateway)),
        directory=directory,
        admin=admin,
        verifier=Verifier(str(keys.gateway)),
        replay=replay,
        send=sent.append,
    )
    raw = mail(keys.clearsign(PHRASE, keys.alice))
    outcome = await gateway.handle(Function.CHPASSWD, raw)
    assert not outcome.accepted
    password_mail, notice = sent
    assert notice["In-Reply-To"] == password_mail["Message-ID"]
    assert "was NOT stored" in body_of(notice) and "NO-SUCH" in body_of(notice)
    assert await directory.get("alice") == before  # nothing stored
    # Final: the same mail again is a replay, not a second password.
    await gateway.handle(Function.CHPASSWD, raw)
    assert "already processed" in body_of(sent[-1]) and len(sent) == 3
    replay.close()


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("depth", [1000, mime.MAX_DEPTH])
def test_a_message_nested_too_deep_is_logged_and_dropped_without_reply(
    site: Site, keys: Keys, depth: int
) -> None:
    # A valid signed request at the bottom: depth alone must be enough to drop it.
    signed = mail(keys.clearsign("ircnick: deep\n", keys.alice)).split(b"\n\n", 1)[1]
    raw = nested(depth, b"Content-Type: text/plain\n\n" + signed)
    done = site.run("change", raw)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"refused without reply" in done.stderr
    assert site.replies() == []
    assert site.account("alice").profile.irc_nick == "alice-irc"


def test_a_signed_request_a_few_mime_levels_down_is_still_answered(site: Site, keys: Keys) -> None:
    signed = mail(keys.clearsign("ircnick: shallow\n", keys.alice)).split(b"\n\n", 1)[1]
    done = site.run("change", nested(3, b"Content-Type: text/plain\n\n" + signed))
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    assert "Changed entry ircNick to shallow" in body_of(reply)
