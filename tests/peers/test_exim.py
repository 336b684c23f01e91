"""Exim 4.96's ``dovecot`` authenticator against the front end.

Debian's exim4-daemon-heavy conflicts with postfix, so it is not installed:
``scripts/fetch-exim.sh`` unpacks the package into ``.cache/exim`` of the checkout
(reference §6b) and its libraries come from bootstrap's test packages. The binary
looks up its compiled-in user ``Debian-exim`` before reading any configuration;
rather than adding that user to the system, the test gives Exim a private user
database through nss_wrapper (``LD_PRELOAD``), mapping it to ``nobody``.

Each test runs ``exim4 -C <private config> -bs`` - one SMTP session on stdin and
stdout, no daemon, nothing in /etc or /var - with authenticators for PLAIN, LOGIN
and CRAM-MD5 pointing at a front end's client socket. Exim opens a new connection
per AUTH and says ``VERSION 1 0``. Expected (reference §6b): 235 for the right
password, 535 for a wrong one, 435 when the directory is down.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hmac
import os
import select
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.conftest import ThreadedFrontends, private_dir, stop_process

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(os.geteuid() != 0, reason="exim -C with a private config runs as root"),
]

CHECKOUT = Path(__file__).resolve().parents[2]
NOBODY = 65534
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")

EXIM_CONF = """\
primary_hostname = mx.test
keep_environment =
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
auth_advertise_hosts = *

begin authenticators
"""

AUTHENTICATOR = """
dovecot_{name}:
  driver = dovecot
  public_name = {mech}
  server_socket = {socket}
  server_set_id = $auth1
"""


@dataclass(frozen=True)
class Exim:
    binary: str
    env: dict[str, str]
    configs: dict[str, Path]


def fetch_exim() -> str:
    """The unpacked exim4 binary (scripts/fetch-exim.sh), or skip saying why not."""
    try:
        done = subprocess.run(
            [str(CHECKOUT / "scripts" / "fetch-exim.sh")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot unpack exim4-daemon-heavy: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot unpack exim4-daemon-heavy: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def find_nss_wrapper() -> str | None:
    """The path of libnss_wrapper.so (Debian ships it without a versioned soname)."""
    candidates = [*sorted(glob.glob("/usr/lib/*/libnss_wrapper.so")), "/usr/lib/libnss_wrapper.so"]
    return next((path for path in candidates if os.path.exists(path)), None)


def nss_databases(root: Path) -> dict[str, str]:
    """nss_wrapper files: the system's users and groups plus Debian-exim as nobody."""
    passwd = root / "passwd"
    group = root / "group"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + f"Debian-exim:x:{NOBODY}:{NOBODY}:Exim:/nonexistent:/usr/sbin/nologin\n"
    )
    group.write_text(Path("/etc/group").read_text() + f"Debian-exim:x:{NOBODY}:\n")
    return {"NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(group)}


@pytest.fixture(scope="module")
def exim() -> Iterator[Exim]:
    binary = fetch_exim()
    nss_wrapper = find_nss_wrapper()
    if nss_wrapper is None:
        pytest.skip("libnss-wrapper is not installed (scripts/bootstrap.sh test installs it)")
    frontends = ThreadedFrontends()
    with private_dir("exim") as root:
        try:
            sockets = {
                "healthy": frontends.start(root / "healthy"),
                "down": frontends.start(root / "down", directory_down=True),
            }
            for sub in ("spool", "log"):  # Exim writes them as its own user
                (root / sub).mkdir()
                os.chown(root / sub, NOBODY, NOBODY)
            configs = {}
            for name, socket in sockets.items():
                text = EXIM_CONF.format(root=root) + "".join(
                    AUTHENTICATOR.format(
                        name=mech.lower().replace("-", "_"), mech=mech, socket=socket
                    )
                    for mech in MECHANISMS
                )
                configs[name] = root / f"exim-{name}.conf"
                configs[name].write_text(text)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LD_PRELOAD": nss_wrapper,
                **nss_databases(root),
            }
            yield Exim(binary=binary, env=env, configs=configs)
        finally:
            frontends.close()


class Session:
    """``exim4 -bs``: one SMTP session over the process's stdin and stdout."""

    def __init__(self, exim: Exim, config: Path) -> None:
        self.proc = subprocess.Popen(
            [exim.binary, "-C", str(config), "-bs", "-oMa", "127.0.0.2", "-oMi", "127.0.0.1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=exim.env,
            bufsize=0,
            start_new_session=True,
        )

    def reply(self) -> tuple[int, str]:
        """The next (possibly multi-line) reply: its code and its last line's text."""
        assert self.proc.stdout is not None
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 30)
            if not ready:
                raise AssertionError("exim did not answer within 30 s")
            line = self.proc.stdout.readline().decode().rstrip("\r\n")
            if not line:
                raise AssertionError("exim ended the session")
            if line[3:4] != "-":
                return int(line[:3]), line[4:]

    def command(self, line: str) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, OSError):
                self.command("QUIT")
        stop_process(self.proc)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def exim_auth(exim: Exim, config: str, mech: str, user: str, password: str) -> int:
    session = Session(exim, exim.configs[config])
    try:
        assert session.reply()[0] == 220
        assert session.command("EHLO client.test")[0] == 250
        match mech:
            case "PLAIN":
                response = b64(b"\0" + user.encode() + b"\0" + password.encode())
                code, _ = session.command(f"AUTH PLAIN {response}")
            case "LOGIN":
                code, prompt = session.command("AUTH LOGIN")
                assert (code, base64.b64decode(prompt)) == (334, b"Username:")
                code, prompt = session.command(b64(user.encode()))
                assert (code, base64.b64decode(prompt)) == (334, b"Password:")
                code, _ = session.command(b64(password.encode()))
            case "CRAM-MD5":
                code, challenge = session.command("AUTH CRAM-MD5")
                assert code == 334
                digest = hmac.new(password.encode(), base64.b64decode(challenge), "md5")
                code, _ = session.command(b64(f"{user} {digest.hexdigest()}".encode()))
            case _:
                raise AssertionError(mech)
        return code
    finally:
        session.close()


@pytest.mark.parametrize("mech", MECHANISMS)
def test_exim_accepts_the_right_password(exim: Exim, mech: str) -> None:
    assert exim_auth(exim, "healthy", mech, "alice", "secret") == 235


@pytest.mark.parametrize("mech", MECHANISMS)
def test_exim_refuses_a_wrong_password(exim: Exim, mech: str) -> None:
    assert exim_auth(exim, "healthy", mech, "alice", "wrong") == 535


def test_exim_refuses_an_unknown_user_as_it_refuses_a_wrong_password(exim: Exim) -> None:
    assert exim_auth(exim, "healthy", "PLAIN", "nobody", "secret") == 535


def test_exim_accepts_a_crypt_hash(exim: Exim) -> None:
    assert exim_auth(exim, "healthy", "LOGIN", "bob", "bobpw") == 235


@pytest.mark.parametrize("mech", MECHANISMS)
def test_exim_answers_435_while_the_directory_is_down(exim: Exim, mech: str) -> None:
    assert exim_auth(exim, "down", mech, "alice", "secret") == 435
