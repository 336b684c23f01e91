"""``auth test -x/-a``, ``auth lookup`` (passdb) and ``user-lookup`` (userdb): doveadm's
options, output and exit codes, in-process and through a running ``mailwarden serve``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailwarden.cli import main
from tests.peers.configs import daemon_toml
from tests.peers.conftest import running_serve

MAILWARDEN = [sys.executable, "-m", "mailwarden"]

PASSWD = (
    "alice:{PLAIN}secret:5000:5000::/var/mail/alice::userdb_mail=maildir:~/Maildir nodelay\n"
    "dave:{PLAIN}secret::::::allow_nets=127.0.0.0/8\n"
)


def run(cfg: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(cfg), *args], input=stdin)


def make_site(root: Path) -> Path:
    cfg = root / "mailwarden.toml"
    cfg.write_text(daemon_toml(auth={"master_user_separator": "*"}))
    assert run(cfg, "init").exit_code == 0
    (root / "passwd").write_text(PASSWD)
    r = run(cfg, "import", "passwd-file", str(root / "passwd"), "-q")
    assert r.exit_code == 0, r.output
    r = run(cfg, "user", "add", "admin", "--password-stdin", "--set", "master=yes", stdin="m4\n")
    assert r.exit_code == 0, r.output
    return cfg


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


# --------------------------------------------------------------------------- in-process


def test_x_keys_reach_the_decision(site: Path) -> None:
    assert run(site, "auth", "test", "-x", "rip=127.0.0.1", "dave", "secret").exit_code == 0
    assert run(site, "auth", "test", "-x", "rip=10.0.0.1", "dave", "secret").exit_code == 77
    # the old option is an alias; a later -x wins over it
    assert run(site, "auth", "test", "--rip", "10.0.0.1", "dave", "secret").exit_code == 77
    r = run(site, "auth", "test", "--rip", "10.0.0.1", "-x", "rip=127.0.0.2", "dave", "secret")
    assert r.exit_code == 0, r.output


def test_every_x_key_is_accepted(site: Path) -> None:
    r = run(
        site,
        "auth",
        "test",
        *("-x", "service=smtp", "-x", "lip=127.0.0.1", "-x", "rip=127.0.0.1"),
        *("-x", "lport=25", "-x", "rport=40000", "-x", "real_rip=127.0.0.1"),
        *("-x", "session=abc", "-x", "secured", "-x", "debug"),
        "alice",
        "secret",
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("passdb: alice auth succeeded\nextra fields:\n  user=alice\n")
    assert "mailwarden.debug: session=abc" in r.stderr  # -x debug and -x session arrived


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("rpi=10.0.0.1", "unknown key 'rpi' (known: service, rip, lip"),
        ("rpi=10.0.0.1", 'did you mean "rip"?'),
        ("nologin", "unknown key 'nologin'"),
        ("rip=not-an-ip", "expected rip=<an IP address>"),
        ("lport=70000", "expected lport=<a port 1-65535>"),
        ("rip", "expected rip=<an IP address>"),
        ("service=", "expected service=<a value>"),
    ],
)
def test_a_bad_x_key_is_a_usage_error(site: Path, item: str, message: str) -> None:
    r = run(site, "auth", "test", "-x", item, "alice", "secret")
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_a_refused_login_prints_as_doveadm_does(site: Path) -> None:
    r = run(site, "auth", "test", "alice", "wrong")
    assert (r.exit_code, r.stdout) == (77, "passdb: alice auth failed\n")


def test_auth_lookup_prints_the_passdb_entry_never_the_password(site: Path) -> None:
    r = run(site, "auth", "lookup", "alice")
    assert r.exit_code == 0, r.output
    assert r.stdout == "passdb: alice\n  user      : alice\n  nodelay   \n"
    assert "secret" not in r.output and "PLAIN" not in r.output


def test_user_lookup_prints_the_userdb_fields_and_one_with_f(site: Path) -> None:
    r = run(site, "user-lookup", "alice")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "userdb: alice"
    assert {
        "  home      : /var/mail/alice",
        "  uid       : 5000",
        "  mail      : maildir:~/Maildir",
    } <= set(lines)
    assert "nodelay" not in r.output  # a passdb field
    r = run(site, "user-lookup", "-f", "home", "alice")
    assert (r.exit_code, r.stdout) == (0, "/var/mail/alice\n")


def test_lookups_of_unknown_users_exit_67_and_keep_going(site: Path) -> None:
    r = run(site, "auth", "lookup", "nobody")
    assert (r.exit_code, r.stdout) == (67, "passdb lookup: user nobody doesn't exist\n")
    r = run(site, "user-lookup", "nobody", "alice")
    assert r.exit_code == 67
    assert r.stdout.startswith("userdb lookup: user nobody doesn't exist\n\nuserdb: alice\n")
    r = run(site, "user-lookup", "-f", "home", "nobody")
    assert (r.exit_code, r.stdout) == (67, "")
    assert "doesn't exist" in r.stderr


def test_a_lookup_by_another_name_prints_the_canonical_one(site: Path) -> None:
    r = run(site, "user-lookup", "ALICE")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("userdb: ALICE\n  user      : alice\n")


def test_an_unreachable_socket_is_a_temporary_failure(site: Path) -> None:
    absent = str(site.parent / "run" / "no-such-socket")
    for args in (
        ("auth", "test", "-a", absent, "alice", "secret"),
        ("user-lookup", "-a", absent, "alice"),
    ):
        r = run(site, *args)
        assert r.exit_code == 75, r.output
        assert f"Fatal: Couldn't connect to auth socket {absent}" in r.stderr


# --------------------------------------------------------------------------- -a SOCKET


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``mailwarden serve`` over a site like :func:`site`'s."""
    root = tmp_path_factory.mktemp("served")
    cfg = make_site(root)
    run_dir = root / "run"
    with running_serve(cfg, ready=(str(run_dir / "auth-client"), str(run_dir / "auth-userdb"))):
        yield cfg


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a process of its own, as an administrator runs it."""
    return subprocess.run(
        [*MAILWARDEN, "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sockets(cfg: Path) -> tuple[str, str, str]:
    run_dir = cfg.parent / "run"
    return tuple(str(run_dir / f"auth-{r}") for r in ("client", "userdb", "master"))  # type: ignore[return-value]


def test_auth_test_through_the_client_socket(served: Path) -> None:
    client, _, _ = sockets(served)
    ok = cli(served, "auth", "test", "-a", client, "alice", "secret")
    assert (ok.returncode, ok.stdout) == (
        0,
        "passdb: alice auth succeeded\nextra fields:\n  user=alice\n  nodelay\n",
    ), ok.stderr
    bad = cli(served, "auth", "test", "-a", client, "alice", "wrong")
    assert bad.returncode == 77
    assert bad.stdout.startswith("passdb: alice auth failed\n")
    far = ("-x", "service=smtp", "-x", "rip=10.0.0.1")
    assert cli(served, "auth", "test", "-a", client, *far, "dave", "secret").returncode == 77
    near = ("-x", "rip=127.0.0.1")
    assert cli(served, "auth", "test", "-a", client, *near, "dave", "secret").returncode == 0
    master = cli(served, "auth", "test", "-a", client, "-M", "admin", "alice", "m4")
    assert master.returncode == 0, master.stdout
    assert {"  user=alice", "  auth_user=admin"} <= set(master.stdout.splitlines())


@pytest.mark.parametrize(
    "args",
    [
        ("auth", "lookup", "alice"),
        ("auth", "lookup", "nobody"),
        ("auth", "lookup", "-f", "nodelay", "alice"),
        ("user-lookup", "alice"),
        ("user-lookup", "ALICE", "nobody"),
        ("user-lookup", "-f", "uid", "alice"),
    ],
)
def test_a_lookup_through_a_socket_prints_what_the_in_process_one_prints(
    served: Path, args: tuple[str, ...]
) -> None:
    _, userdb, master = sockets(served)
    here = cli(served, *args)
    for path in (userdb, master):
        there = cli(served, *args, "-a", path)
        assert (there.returncode, there.stdout) == (here.returncode, here.stdout), path
