"""``mailwarden mailgate`` end to end: a real process, real GnuPG, a real SQLite directory.

Each test has its own site (config, directory, replay cache) and a ``sendmail``
program that stores every reply it is given in an outbox folder, so what the
gateway would have mailed can be read back, decrypted and checked.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account, AccountStatus, Profile
from tests.helpers import hashed
from tests.mailgate.conftest import DAY, Keys, gpg, mail, mime_mail

SENDMAIL = """#!/bin/sh
# A stand-in MTA for the tests: keep the message, as sendmail -t would queue it.
out="{outbox}/$(date +%s%N).eml"
cat > "$out.tmp" && mv "$out.tmp" "$out"
"""


@dataclass
class Site:
    root: Path
    config: Path
    outbox: Path
    keys: Keys

    def run(
        self, function: str, raw: bytes, *, sender: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "SENDER"}
        if sender is not None:
            env["SENDER"] = sender
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mailwarden",
                "--config",
                str(self.config),
                "mailgate",
                function,
            ],
            env=env,
            input=raw,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mailwarden", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def replies(self) -> list[email.message.EmailMessage]:
        out = []
        for path in sorted(self.outbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, email.message.EmailMessage)
            out.append(message)
        return out

    def account(self, uid: str) -> Account:
        async def get() -> Account | None:
            directory = await SQLiteDirectory.open(self.root / "accounts.db", create=False)
            try:
                return await directory.get(uid)
            finally:
                await directory.close()

        found = asyncio.run(get())
        assert found is not None
        return found


def body_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def write_config(site: Site, *, mailer: str | None = None, directory_timeout: float = 5.0) -> None:
    """The site's config; ``mailer`` replaces the default ``sendmail = <the outbox script>``."""
    site.config.write_text(
        f"""
[directory]
path = "accounts.db"
timeout = {directory_timeout}
[passwords]
scheme = "SHA512-CRYPT"
[server]
control_socket = ""
[mailgate]
gnupg_home = "{site.keys.gateway}"
state_dir = "state"
{mailer or f'sendmail = "{site.root / "sendmail"}"'}
from_address = "mailgate@example.org"
signing_key = "{site.keys.gateway_key}"
dns_zone = "users.example.org"
"""
    )


def make_site(keys: Keys, tmp_path: Path) -> Site:
    """A site in ``tmp_path``: config, a SQLite directory of five accounts, an outbox."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(SENDMAIL.format(outbox=outbox))
    sendmail.chmod(0o755)
    site = Site(tmp_path, tmp_path / "mailwarden.toml", outbox, keys)
    write_config(site)

    async def populate() -> None:
        directory = await SQLiteDirectory.open(tmp_path / "accounts.db", create=True)
        try:
            for uid, key in (
                ("alice", keys.alice),
                ("bob", keys.bob),
                ("old", keys.expired),
                ("dora", keys.dora),
                ("signonly", keys.signonly),
            ):
                await directory.create(
                    Account(
                        uid=uid,
                        mail=f"{uid}@example.org",
                        password=hashed("old-password"),
                        pgp_fingerprint=key,
                        profile=Profile(irc_nick=f"{uid}-irc"),
                    )
                )
        finally:
            await directory.close()

    asyncio.run(populate())
    return site


@pytest.fixture
def site(keys: Keys, tmp_path: Path) -> Site:
    return make_site(keys, tmp_path)


# --------------------------------------------------------------------------- ping


@pytest.mark.parametrize("style", ["clearsign", "pgp/mime"])
def test_ping_replies_with_the_public_record_to_the_account_address(
    site: Site, keys: Keys, style: str
) -> None:
    raw = (
        mail(keys.clearsign("ping\n", keys.alice))
        if style == "clearsign"
        else mime_mail(keys, "ping\n", keys.alice)
    )
    done = site.run("ping", raw)
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    assert reply["To"] == "alice@example.org"  # never the forged From: of the mail
    text = body_of(reply)
    assert "uid: alice" in text and "irc_nick: alice-irc" in text
    assert "old-password" not in text and "$6$" not in text
    # Signed by the gateway's own key.
    verified = subprocess.run(
        ["gpg", "--homedir", str(keys.world), "--batch", "--status-fd", "1", "--verify"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert f"VALIDSIG {keys.gateway_key}".encode() in verified.stdout


# --------------------------------------------------------------------------- refusals


def test_a_replayed_message_is_refused_with_a_reason(site: Site, keys: Keys) -> None:
    raw = mail(keys.clearsign("ping\n", keys.alice))
    assert site.run("ping", raw).returncode == 0
    assert site.run("ping", raw).returncode == 0
    first, second = site.replies()
    assert "uid: alice" in body_of(first)
    assert "already processed" in body_of(second)
    assert "uid: alice" not in body_of(second)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("unsigned", lambda k: mail(b"ping\n")),
        (
            "tampered",
            lambda k: mail(
                k.clearsign("ircnick: a\n", k.alice).replace(b"ircnick: a", b"ircnick: b")
            ),
        ),
        ("key not in the keyring", lambda k: mail(k.clearsign("ping\n", k.mallory))),
        ("key of no account", lambda k: mail(k.clearsign("ping\n", k.carol))),
        (
            "expired key",
            lambda k: mail(k.clearsign("ping\n", k.expired, at=time.time() - 1.5 * DAY)),
        ),
    ],
)
def test_unverifiable_mail_gets_no_reply_and_no_bounce(
    site: Site, keys: Keys, name: str, make: object
) -> None:
    raw = make(keys)  # type: ignore[operator]
    done = site.run("change", raw)
    assert done.returncode == 0, done.stderr  # a bounce would go to the forged sender
    assert site.replies() == []
    assert b"refused without reply" in done.stderr
    assert site.account("alice").profile.irc_nick == "alice-irc"


@pytest.mark.parametrize(("offset", "why"), [(-5 * DAY, "old"), (4 * DAY, "future")])
def test_a_signature_outside_the_clock_window_is_refused(
    site: Site, keys: Keys, offset: float, why: str
) -> None:
    raw = mail(keys.clearsign("ping\n", keys.dora, at=time.time() + offset))
    assert site.run("ping", raw).returncode == 0
    (reply,) = site.replies()
    assert reply["To"] == "dora@example.org"
    assert why in body_of(reply) and "uid: dora" not in body_of(reply)


def test_a_mail_with_a_null_envelope_sender_is_ignored(site: Site, keys: Keys) -> None:
    raw = mail(keys.clearsign("ping\n", keys.alice))
    done = site.run("ping", raw, sender="")
    assert done.returncode == 0 and site.replies() == []
    # The same message from a real sender is still new: nothing was recorded.
    assert site.run("ping", raw, sender="alice@example.org").returncode == 0
    assert "uid: alice" in body_of(site.replies()[0])


def test_a_disabled_account_is_refused(site: Site, keys: Keys) -> None:
    assert site.cli("user", "disable", "bob").returncode == 0
    assert site.run("ping", mail(keys.clearsign("ping\n", keys.bob))).returncode == 0
    (reply,) = site.replies()
    assert "disabled" in body_of(reply)


def test_a_directory_outage_exits_75_without_mail(site: Site, keys: Keys) -> None:
    (site.root / "accounts.db").rename(site.root / "moved.db")
    done = site.run("ping", mail(keys.clearsign("ping\n", keys.alice)))
    assert done.returncode == 75
    assert site.replies() == []


# --------------------------------------------------------------------------- chpasswd


def _recipients(keys: Keys, armoured: str) -> list[str]:
    packets = subprocess.run(
        ["gpg", "--homedir", str(keys.world), "--batch", "--list-packets"],
        input=armoured.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    ).stdout.decode()
    return re.findall(r":pubkey enc packet: .*keyid ([0-9A-F]+)", packets)


def _encryption_subkey(keys: Keys, fpr: str) -> str:
    listing = gpg(keys.world, "--with-colons", "--list-keys", fpr).decode()
    return next(line.split(":")[4] for line in listing.splitlines() if line.startswith("sub:"))


@pytest.mark.parametrize("style", ["clearsign", "pgp/mime"])
def test_chpasswd_sets_a_new_password_sent_encrypted_to_the_account_key_only(
    site: Site, keys: Keys, style: str
) -> None:
    phrase = "Please change my mail password\n"
    raw = (
        mail(keys.clearsign(phrase, keys.alice))
        if style == "clearsign"
        else mime_mail(keys, phrase, keys.alice)
    )
    done = site.run("chpasswd", raw)
    assert done.returncode == 0, done.stderr
    (reply,) = site.replies()
    assert reply["To"] == "alice@example.org"
    armoured = body_of(reply)
    assert armoured.startswith("-----BEGIN PGP MESSAGE-----")
    assert _recipients(keys, armoured) == [_encryption_subkey(keys, keys.alice)]
    plain = gpg(keys.world, "--decrypt", stdin=armoured.encode()).decode()
    password = plain.split("is:", 1)[1].split()[0]
    assert len(password) >= 20
    assert site.cli("auth", "test", "alice", password).returncode == 0
    assert site.cli("auth", "test", "alice", "old-password").returncode != 0
    # The audit log has the change, made by the key's owner through the gateway.
    audit = site.cli("audit", "--user", "alice", "--json")
    assert audit.returncode == 0, audit.stderr
    (entry,) = json.loads(audit.stdout)
    assert (entry["actor"], entry["action"], entry["source"]) == (
        "user:alice",
        "account.password",
        "mail",
    )
    assert password not in audit.stdout


def test_chpasswd_needs_exactly_the_phrase_and_nothing_else(site: Site, keys: Keys) -> None:
    text = "> Please change my mail password\nthanks\n"
    # "chpass" is the original gateway's name of the function.
    assert site.run("chpass", mail(keys.clearsign(text, keys.alice))).returncode == 0
    (reply,) = site.replies()
    assert "exactly the configured phrase" in body_of(reply)
    assert site.cli("auth", "test", "alice", "old-password").returncode == 0


# --------------------------------------------------------------------------- exports


def test_ssh_keys_prints_the_keys_of_active_accounts_only(site: Site) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"
    assert site.cli("user", "set", "alice", "pgp_fingerprint=").returncode == 0

    async def add_key() -> None:
        directory = await SQLiteDirectory.open(site.root / "accounts.db", create=False)
        try:
            await directory.update("alice", {"ssh_keys": (key,)})
            await directory.update("bob", {"ssh_keys": (key,), "status": AccountStatus.DISABLED})
        finally:
            await directory.close()

    asyncio.run(add_key())
    done = site.cli("ssh-keys", "alice")
    assert (done.returncode, done.stdout) == (0, key + "\n")
    for user in ("bob", "nobody"):
        done = site.cli("ssh-keys", user)
        assert (done.returncode, done.stdout) == (0, "")


def test_dns_zone_serial_changes_only_with_the_content(site: Site) -> None:
    first = site.cli("dns-zone")
    assert first.returncode == 0, first.stderr
    serial = site.cli("dns-zone", "--serial").stdout.strip()
    assert f"; serial {serial}" in first.stdout and "$ORIGIN users.example.org." in first.stdout

    async def add_record() -> None:
        directory = await SQLiteDirectory.open(site.root / "accounts.db", create=False)
        try:
            await directory.update("alice", {"dns_records": ("alice IN A 192.0.2.7",)})
        finally:
            await directory.close()

    asyncio.run(add_record())
    second = site.cli("dns-zone")
    assert "alice IN A 192.0.2.7" in second.stdout
    new_serial = site.cli("dns-zone", "--serial").stdout.strip()
    assert int(new_serial) > int(serial)
    assert site.cli("dns-zone", "--serial").stdout.strip() == new_serial


# --------------------------------------------------------------------------- change


def _ssh_key(tmp_path: Path) -> str:
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(path)],
        check=True,
        timeout=60,
    )
    return (tmp_path / "id_ed25519.pub").read_text().strip()


@pytest.mark.parametrize("style", ["clearsign", "pgp/mime"])
def test_a_change_with_an_error_in_the_middle_applies_exactly_the_lines_before_it(
    site: Site, keys: Keys, tmp_path: Path, style: str
) -> None:
    key = _ssh_key(tmp_path)
    text = (
        "ircnick: wonderland\n"
        f"{key}\n"
        "alice in a 192.0.2.10\n"
        "Lat: +51.75 Long: -001.25\n"
        "telephonenumber: this is not understood\n"
        "this line makes no sense\n"
        "c: FR\n"
        "-- \n"
        "Alice\n"
    )
    raw = (
        mail(keys.clearsign(text, keys.alice))
        if style == "clearsign"
        else (mime_mail(keys, text, keys.alice))
    )
    done = site.run("change", raw)
    assert done.returncode == 0, done.stderr
    account = site.account("alice")
    assert account.profile.irc_nick == "wonderland"
    assert account.ssh_keys == (key,)
    assert account.dns_records == ("alice IN A 192.0.2.10",)
    assert account.profile.latitude == "+51.75"
    assert account.profile.c is None  # after the halting line: never processed
    (reply,) = site.replies()
    assert reply["To"] == "alice@example.org"
    report = body_of(reply)
    assert "> ircnick: wonderland" in report
    assert "DNS Entry replaced with alice IN A 192.0.2.10" in report
    assert "> this line makes no sense" in report
    assert "> c: FR" in report and "Not processed" in report
    assert "Alice" not in report.split("> c: FR", 1)[1].split("Not processed", 1)[1]


def test_a_dns_name_owned_by_another_account_is_refused_softly(site: Site, keys: Keys) -> None:
    first = mail(keys.clearsign("www in a 192.0.2.1\n", keys.bob))
    assert site.run("change", first).returncode == 0
    assert site.account("bob").dns_records == ("www IN A 192.0.2.1",)
    second = mail(keys.clearsign("www in a 192.0.2.2\nircnick: al\n", keys.alice))
    assert site.run("change", second).returncode == 0
    assert site.account("alice").dns_records == ()
    assert site.account("alice").profile.irc_nick == "al"  # processing went on
    assert site.account("bob").dns_records == ("www IN A 192.0.2.1",)
    zone = site.cli("dns-zone").stdout
    assert "www IN A 192.0.2.1  ; bob" in zone


def test_show_attaches_the_record_encrypted_to_the_account_key(site: Site, keys: Keys) -> None:
    assert site.run("change", mail(keys.clearsign("show\n", keys.alice))).returncode == 0
    (reply,) = site.replies()
    attachments = list(reply.iter_attachments())
    assert len(attachments) == 1
    armoured = attachments[0].get_content()
    if isinstance(armoured, bytes):
        armoured = armoured.decode()
    assert "alice-irc" not in armoured
    assert _recipients(keys, armoured) == [_encryption_subkey(keys, keys.alice)]
    record = gpg(keys.world, "--decrypt", stdin=armoured.encode()).decode()
    assert "irc_nick: alice-irc" in record


def test_chpasswd_changes_nothing_when_the_key_cannot_receive_encrypted_mail(
    site: Site, keys: Keys
) -> None:
    phrase = "Please change my mail password\n"
    assert site.run("chpasswd", mail(keys.clearsign(phrase, keys.signonly))).returncode == 0
    (reply,) = site.replies()
    assert reply["To"] == "signonly@example.org"
    assert "Nothing was changed" in body_of(reply)
    assert site.cli("auth", "test", "signonly", "old-password").returncode == 0
