"""Real GnuPG for the gateway tests: throwaway keys and signed messages.

Two GnuPG homes, made once per session under the system temp dir (short paths:
gpg-agent's socket path must fit in a sockaddr_un):

* the *world*: every sender's secret key, used to sign test messages;
* the *gateway*: what an administrator would give the gateway — the public keys
  of alice, bob, carol (no account), an expired key and a revoked key, plus the
  gateway's own secret key. mallory's key is not in it at all.

Messages are signed by running ``gpg`` itself (``--clearsign`` or
``--detach-sign`` over a MIME part, as a mail client does). The agents are killed
at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")

DAY = 86400


def gpg(home: Path, *args: str, stdin: bytes = b"", at: float | None = None) -> bytes:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty"]
    cmd += ["--pinentry-mode", "loopback", "--passphrase", ""]
    if at is not None:
        cmd += ["--faked-system-time", f"{int(at)}!", "--ignore-time-conflict"]
    done = subprocess.run([*cmd, *args], input=stdin, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"gpg {args}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def new_key(
    home: Path, uid: str, *, expire: str = "1y", at: float | None = None, encr: bool = True
) -> str:
    gpg(home, "--quick-gen-key", uid, "ed25519", "sign,cert", expire, at=at)
    if encr:
        gpg(home, "--quick-add-key", fingerprint(home, uid), "cv25519", "encr", expire, at=at)
    return fingerprint(home, uid)


def fingerprint(home: Path, uid: str) -> str:
    listing = gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


@dataclass(frozen=True)
class Keys:
    world: Path
    gateway: Path
    alice: str
    bob: str
    carol: str
    mallory: str
    expired: str
    revoked: str
    gateway_key: str
    dora: str
    signonly: str

    def clearsign(self, text: str, key: str, *, at: float | None = None) -> bytes:
        return gpg(self.world, "-u", key, "--clearsign", stdin=text.encode(), at=at)

    def detach_sign(self, data: bytes, key: str, *, at: float | None = None) -> bytes:
        return gpg(self.world, "-u", key, "--armor", "--detach-sign", stdin=data, at=at)


@pytest.fixture(scope="session")
def keys() -> Iterator[Keys]:
    world = Path(tempfile.mkdtemp(prefix="mwgw-"))
    gateway = Path(tempfile.mkdtemp(prefix="mwgg-"))
    try:
        for home in (world, gateway):
            home.chmod(0o700)
        now = time.time()
        alice = new_key(world, "Alice <alice@example.org>")
        bob = new_key(world, "Bob <bob@example.org>")
        carol = new_key(world, "Carol <carol@example.org>")
        mallory = new_key(world, "Mallory <mallory@example.org>")
        # Made two days ago, valid for one day: expired yesterday.
        expired = new_key(world, "Old <old@example.org>", expire="1d", at=now - 2 * DAY)
        revoked = new_key(world, "Gone <gone@example.org>")
        # Ten days old, so that it can sign messages dated outside the clock window.
        dora = new_key(world, "Dora <dora@example.org>", at=now - 10 * DAY)
        # A key that can sign but not receive encrypted mail.
        signonly = new_key(world, "Sign Only <signonly@example.org>", encr=False)
        exported = gpg(world, "--export", alice, bob, carol, expired, revoked, dora, signonly)
        gpg(gateway, "--import", stdin=exported)
        gateway_key = new_key(gateway, "Mail gateway <mailgate@example.org>")
        gpg(world, "--import", stdin=gpg(gateway, "--export", gateway_key))
        keys = Keys(
            world,
            gateway,
            alice,
            bob,
            carol,
            mallory,
            expired,
            revoked,
            gateway_key,
            dora,
            signonly,
        )
        yield keys
    finally:
        for home in (world, gateway):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            shutil.rmtree(home, ignore_errors=True)


def revoke_in_gateway(keys: Keys) -> None:
    """Import the revocation certificate gpg made for the revoked key into the gateway."""
    cert = (keys.world / "openpgp-revocs.d" / f"{keys.revoked}.rev").read_bytes()
    cert = cert.replace(b":-----BEGIN PGP PUBLIC KEY BLOCK", b"-----BEGIN PGP PUBLIC KEY BLOCK")
    gpg(keys.gateway, "--import", stdin=cert)


def mail(body: bytes, *, subject: str = "test", sender: str = "someone@evil.example") -> bytes:
    """A plain mail around ``body`` (a clearsigned text) with a forged-looking From."""
    head = (
        f"From: {sender}\nTo: mailgate@example.org\nSubject: {subject}\n"
        "Message-ID: <t@example>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n\n"
    ).encode()
    return head + body


def mime_mail(keys: Keys, text: str, key: str, *, at: float | None = None) -> bytes:
    """An RFC 3156 multipart/signed mail of ``text`` signed by ``key``."""
    body = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    part = (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    signature = keys.detach_sign(part, key, at=at)
    boundary = "=-=mwtest=-="
    head = (
        "From: someone@evil.example\r\nTo: mailgate@example.org\r\nSubject: signed\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/signed; micalg=pgp-sha512; protocol="application/pgp-signature";'
        f' boundary="{boundary}"\r\n\r\n'
        "This is an OpenPGP/MIME signed message.\r\n"
    ).encode()
    b = boundary.encode()
    return (
        head
        + b"--" + b + b"\r\n" + part + b"\r\n"
        + b"--" + b + b"\r\n"
        + b"Content-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
        + signature + b"\r\n"
        + b"--" + b + b"--\r\n"
    )  # fmt: skip


def env_with_home() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "GNUPGHOME"}
