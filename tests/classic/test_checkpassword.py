"""``mailwarden checkpassword``: the fd-3 block parser, then the real command as a process.

The process tests give the command a real fd 3 (a pipe) and a tiny subprogram that
prints its environment as JSON, exactly as qmail-popup and Dovecot call it. Each of
them runs twice (the ``ready`` fixture): deciding locally (``via = "local"``) and
asking a running ``mailwarden serve`` over its Dovecot sockets (``via = "daemon"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import ProtocolError
from mailwarden.model import Account, Profile
from mailwarden.protocols import checkpassword as cp
from mailwarden.protocols import control
from tests.classic.conftest import (
    APP_PASSWORD,
    EXPIRED_APP_PASSWORD,
    MAILWARDEN,
    SMTP_APP_PASSWORD,
    UNKNOWN_APP_PASSWORD,
    daemon_config,
    fill,
    serving,
    write_config,
)

# A subprogram that shows what it was given: its environment (filtered) and uid.
# System Python: after the uid switch the virtualenv may not be readable.
SHOW_ENV = [
    "/usr/bin/python3",
    "-c",
    "import json, os; print(json.dumps({'env': dict(os.environ), 'uid': os.getuid()}))",
]


TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"


def run_cp(
    cfg: Path,
    block: bytes | None,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the command with ``block`` on fd 3 (None: fd 3 closed)."""
    full_env = {k: v for k, v in os.environ.items() if k not in {"AUTHORIZED", "LOGLEVEL"}}
    full_env.update(env or {})
    cmd = [*MAILWARDEN, "-c", str(cfg), "checkpassword", *(SHOW_ENV if args is None else args)]
    if block is None:
        return subprocess.run(cmd, env=full_env, capture_output=True, timeout=30, check=False)
    r, w = os.pipe()
    os.write(w, block)
    os.close(w)
    try:
        # A tiny launcher puts the pipe on descriptor 3, as qmail-popup does with its pipe.
        wrapped = [sys.executable, "-c", TO_FD3, str(r), *cmd]
        return subprocess.run(
            wrapped, env=full_env, capture_output=True, timeout=30, check=False, pass_fds=(r,)
        )
    finally:
        os.close(r)


def shown(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr.decode()
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# erin has what the classic accounts lack: a login shell, a userdb extra field, a
# quota, and a value the checkpassword-reply convention cannot carry (a tab).
ERIN = Account(
    uid="erin",
    password="{PLAIN}erinpw",
    home="/srv/erin",
    mail_location="maildir:/srv/mail/erin:INDEX=/srv/idx/erin",
    quota_bytes=1000,
    uid_number=5001,
    gid_number=5001,
    userdb_fields={"mail_plugins": "quota", "note": "a\tb", "empty": ""},
    profile=Profile(login_shell="/bin/zsh"),
)


async def fill_all(db: Path) -> None:
    await fill(db)
    directory = await SQLiteDirectory.open(db, create=False)
    try:
        await directory.create(ERIN)
    finally:
        await directory.close()


CONTROL_ONLY = (
    '[dovecot]\nenabled = false\n[server]\npid_file = "mw.pid"\ncontrol_socket = "run/control"\n'
)


@pytest.fixture(scope="module")
def daemon_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running ``mailwarden serve`` with the accounts; its folder holds a config per ``via``.

    Its Dovecot sockets are off: the command asks over the control socket alone."""
    root = tmp_path_factory.mktemp("cpd")
    asyncio.run(fill_all(root / "data" / "mw.db"))
    for via in ("daemon", "auto", "local"):
        write_config(root / f"{via}.toml", daemon_config(via, sockets=CONTROL_ONLY))
    with serving(root / "daemon.toml"):
        yield root


@pytest.fixture
def local_cfg(tmp_path: Path) -> Path:
    """Accounts in a directory no daemon serves; checkpassword decides in-process."""
    cfg = write_config(tmp_path / "mw.toml", '[checkpassword]\nvia = "local"\n')
    asyncio.run(fill_all(tmp_path / "data" / "mw.db"))
    return cfg


@pytest.fixture(params=["local", "daemon"])
def ready(request: pytest.FixtureRequest) -> Path:
    """The same accounts, decided locally or (``via = "daemon"``) by the running daemon."""
    if request.param == "local":
        path: Path = request.getfixturevalue("local_cfg")
        return path
    root: Path = request.getfixturevalue("daemon_root")
    return root / "daemon.toml"


# --------------------------------------------------------------------------- parser


def test_a_block_with_all_three_fields_parses() -> None:
    block = cp.parse_block(b"alice\0secret\0<1.2@host>\0")
    assert block.login == "alice"
    assert block.password.value == b"secret"
    assert block.timestamp == b"<1.2@host>"


def test_the_password_stays_out_of_the_blocks_repr() -> None:
    block = cp.parse_block(b"alice\0hunter2\0\0")
    assert "hunter2" not in repr(block)
    assert "hunter2" not in repr(block.password)


def test_a_timestamp_without_its_final_nul_is_accepted() -> None:
    assert cp.parse_block(b"alice\0secret\0").timestamp == b""


@pytest.mark.parametrize("data", [b"", b"alice", b"alice\0secret", b"\0secret\0\0"])
def test_a_truncated_block_or_empty_login_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        cp.parse_block(data)


def test_a_block_over_512_bytes_is_refused() -> None:
    with pytest.raises(ProtocolError, match="longer than 512"):
        cp.parse_block(b"alice\0" + b"x" * 510 + b"\0\0")


def test_data_after_the_timestamp_is_refused() -> None:
    with pytest.raises(ProtocolError):
        cp.parse_block(b"alice\0secret\0ts\0junk")


@given(st.binary(max_size=600))
def test_any_input_parses_or_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        cp.parse_block(data)


def test_a_maildir_location_becomes_an_absolute_maildir_path() -> None:
    assert cp._maildir("maildir:~/Maildir", "/home/a") == "/home/a/Maildir/"
    assert cp._maildir("maildir:/srv/m/a:INDEX=/x", "/home/a") == "/srv/m/a/"
    assert cp._maildir("/srv/m/a/", "/home/a") == "/srv/m/a/"


# --------------------------------------------------------------------------- process


@pytest.mark.parametrize("password", [b"secret", APP_PASSWORD.encode()])
def test_a_right_password_execs_the_subprogram_with_the_account_environment(
    ready: Path, password: bytes
) -> None:
    out = shown(run_cp(ready, b"alice\0" + password + b"\0\0", env={"SERVICE": "pop3"}))
    env = out["env"]
    assert env["USER"] == "alice"
    assert env["HOME"] == "/var/mail/alice"
    assert env["SHELL"] == "/bin/sh"
    assert env["MAILDIR"] == "/var/mail/alice/Maildir/"
    assert env["userdb_uid"] == "5000"
    assert env["userdb_gid"] == "5000"
    assert env["userdb_mail"] == "maildir:~/Maildir"
    assert set(env["EXTRA"].split()) == {"userdb_uid", "userdb_gid", "userdb_mail"}


@pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")
def test_as_root_the_subprogram_runs_as_the_accounts_uid(ready: Path) -> None:
    assert shown(run_cp(ready, b"alice\0secret\0\0"))["uid"] == 5000


def test_under_dovecot_the_uid_is_left_to_dovecot(ready: Path) -> None:
    out = shown(run_cp(ready, b"alice\0secret\0\0", env={"ORIG_UID": str(os.getuid())}))
    assert out["uid"] == os.getuid()


@pytest.mark.parametrize(
    "block",
    [
        b"alice\0wrong\0\0",
        b"nobody\0secret\0\0",
        b"alice\0" + EXPIRED_APP_PASSWORD.encode() + b"\0\0",
        b"alice\0" + UNKNOWN_APP_PASSWORD.encode() + b"\0\0",
        # SERVICE is unset: the service is checkpassword's default, not smtp.
        b"alice\0" + SMTP_APP_PASSWORD.encode() + b"\0\0",
    ],
)
def test_wrong_password_and_unknown_user_both_exit_1_without_exec(
    ready: Path, block: bytes
) -> None:
    result = run_cp(ready, block, env={"LOGLEVEL": "2"})
    assert result.returncode == cp.EXIT_WRONG
    assert result.stdout == b""
    assert b"login refused" in result.stderr


def test_loglevel_0_logs_nothing(ready: Path) -> None:
    result = run_cp(ready, b"alice\0wrong\0\0", env={"LOGLEVEL": "0"})
    assert result.returncode == cp.EXIT_WRONG
    assert result.stderr == b""


def test_loglevel_3_logs_successes(ready: Path) -> None:
    result = run_cp(ready, b"alice\0secret\0\0", env={"LOGLEVEL": "3"})
    assert b"login accepted for 'alice'" in result.stderr


def test_a_disabled_service_switch_refuses_the_login(ready: Path) -> None:
    result = run_cp(ready, b"carol\0carolpw\0\0", env={"SERVICE": "pop3"})
    assert result.returncode == cp.EXIT_WRONG
    assert shown(run_cp(ready, b"carol\0carolpw\0\0", env={"SERVICE": "imap"}))


def test_a_truncated_block_is_misuse(ready: Path) -> None:
    assert run_cp(ready, b"alice\0secret").returncode == cp.EXIT_MISUSE


def test_an_oversized_block_is_misuse(ready: Path) -> None:
    result = run_cp(ready, b"alice\0" + b"x" * 600 + b"\0\0", env={"LOGLEVEL": "1"})
    assert result.returncode == cp.EXIT_MISUSE
    assert b"longer than 512" in result.stderr


def test_no_descriptor_3_is_misuse(ready: Path) -> None:
    assert run_cp(ready, None).returncode == cp.EXIT_MISUSE


def test_no_subprogram_is_misuse(ready: Path) -> None:
    assert run_cp(ready, b"alice\0secret\0\0", args=[]).returncode == cp.EXIT_MISUSE


def test_a_missing_database_is_a_temporary_failure(cfg: Path) -> None:
    assert run_cp(cfg, b"alice\0secret\0\0").returncode == cp.EXIT_TEMPFAIL


def test_a_subprogram_that_cannot_run_is_a_temporary_failure(ready: Path) -> None:
    result = run_cp(ready, b"alice\0secret\0\0", args=["/nonexistent/qmail-pop3d"])
    assert result.returncode == cp.EXIT_TEMPFAIL


CHALLENGE = b"<1896.697170952@dbc.mtview.ca.us>"


def apop_block(password: bytes) -> bytes:
    digest = hashlib.md5(CHALLENGE + password).hexdigest().encode()  # noqa: S324
    return b"alice\0" + digest + b"\0" + CHALLENGE + b"\0"


@pytest.mark.parametrize("where", ["local", "daemon running, via auto"])
def test_apop_uses_the_timestamp_as_challenge(request: pytest.FixtureRequest, where: str) -> None:
    # APOP is always decided locally: the daemon accepts only challenges it minted.
    if where == "local":
        cfg: Path = request.getfixturevalue("local_cfg")
    else:
        cfg = request.getfixturevalue("daemon_root") / "auto.toml"
    result = run_cp(cfg, apop_block(b"secret"), env={"LOGLEVEL": "3"})
    assert shown(result)
    if where != "local":
        assert b"APOP logins are checked locally" in result.stderr
    assert run_cp(cfg, apop_block(b"nope")).returncode == cp.EXIT_WRONG


def test_apop_with_via_daemon_is_a_temporary_failure(daemon_root: Path) -> None:
    result = run_cp(daemon_root / "daemon.toml", apop_block(b"secret"))
    assert result.returncode == cp.EXIT_TEMPFAIL
    assert b"APOP" in result.stderr


def test_dovecot_lookup_of_a_known_user_sets_authorized_2(ready: Path) -> None:
    env = shown(run_cp(ready, b"alice\0\0\0", env={"AUTHORIZED": "1"}))["env"]
    assert env["AUTHORIZED"] == "2"
    assert env["USER"] == "alice"


def test_dovecot_lookup_of_an_unknown_user_exits_3(ready: Path) -> None:
    result = run_cp(ready, b"nobody\0\0\0", env={"AUTHORIZED": "1"})
    assert result.returncode == cp.EXIT_LOOKUP_UNKNOWN


def test_a_master_login_exports_master_user(ready: Path) -> None:
    env = shown(run_cp(ready, b"alice*admin\0masterpw\0\0"))["env"]
    assert env["USER"] == "alice"
    assert env["MASTER_USER"] == "admin"


# --------------------------------------------------------------------------- daemon vs local


@pytest.mark.parametrize(
    ("block", "env"),
    [
        (b"alice\0secret\0\0", {"SERVICE": "pop3"}),
        (b"ALICE\0secret\0\0", {"SERVICE": "imap", "TCPREMOTEIP": "192.0.2.7"}),
        (b"erin\0erinpw\0\0", {}),
        (b"alice*admin\0masterpw\0\0", {}),
        (b"erin\0\0\0", {"AUTHORIZED": "1"}),
        (b"alice\0wrong\0\0", {}),
        (b"nobody\0secret\0\0", {}),
        (b"dave\0davepw\0\0", {}),
        (b"carol\0carolpw\0\0", {"SERVICE": "pop3"}),
        (b"alice*carol\0carolpw\0\0", {}),
        (b"nobody\0\0\0", {"AUTHORIZED": "1"}),
    ],
)
def test_the_daemon_and_the_local_path_give_identical_exits_and_environments(
    daemon_root: Path, local_cfg: Path, block: bytes, env: dict[str, str]
) -> None:
    env = {**env, "LOGLEVEL": "3"}
    by_daemon = run_cp(daemon_root / "daemon.toml", block, env=env)
    locally = run_cp(local_cfg, block, env=env)
    assert b"decided by the daemon" in by_daemon.stderr
    assert b"deciding locally" in locally.stderr
    assert by_daemon.returncode == locally.returncode
    assert by_daemon.stdout == locally.stdout


def test_the_environment_carries_the_login_shell_and_every_userdb_field(ready: Path) -> None:
    env = shown(run_cp(ready, b"erin\0erinpw\0\0"))["env"]
    assert env["SHELL"] == "/bin/zsh"
    assert env["HOME"] == "/srv/erin"
    assert env["MAILDIR"] == "/srv/mail/erin/"
    assert env["userdb_quota_rule"] == "*:bytes=1000"
    assert env["userdb_mail_plugins"] == "quota"
    assert env["userdb_empty"] == ""
    assert "userdb_note" not in env  # a tab: checkpassword-reply would refuse it
    assert "mailwarden_login_shell" not in env["EXTRA"]


@pytest.mark.parametrize("socket_state", ["missing", "refusing"])
def test_with_the_daemon_not_running_auto_falls_back_to_the_local_path(
    local_cfg: Path, socket_state: str
) -> None:
    run = local_cfg.parent / "run"
    run.mkdir()
    if socket_state == "refusing":
        # A socket file left by a dead daemon: bound, nobody listening.
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(run / "control"))
    write_config(local_cfg, daemon_config("auto"))
    result = run_cp(local_cfg, b"alice\0secret\0\0", env={"LOGLEVEL": "3"})
    assert shown(result)["env"]["USER"] == "alice"
    assert b"daemon not running" in result.stderr
    assert b"deciding locally" in result.stderr


def test_with_the_control_socket_turned_off_auto_decides_locally(local_cfg: Path) -> None:
    write_config(local_cfg, '[server]\ncontrol_socket = ""\n[checkpassword]\nvia = "auto"\n')
    result = run_cp(local_cfg, b"alice\0secret\0\0", env={"LOGLEVEL": "3"})
    assert shown(result)
    assert b"server.control_socket is off" in result.stderr


def test_via_daemon_with_the_daemon_down_is_a_temporary_failure(local_cfg: Path) -> None:
    write_config(local_cfg, daemon_config("daemon"))
    result = run_cp(local_cfg, b"alice\0secret\0\0")
    assert result.returncode == cp.EXIT_TEMPFAIL
    assert b"via = daemon, but daemon not running" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "[checkpassword\n",  # not TOML
        '[checkpassword]\nvia = "sometimes"\n',
        "[checkpassword]\ntimeout = 0\n",
        "[checkpassword]\nretries = 3\n",
        '[server]\ncontrol_socket = 5\n[checkpassword]\nvia = "daemon"\n',
        '[passwords]\nscheme = "NOPE"\n[checkpassword]\nvia = "local"\n',  # full check
    ],
)
def test_a_bad_config_file_is_a_temporary_failure(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(text)
    result = run_cp(cfg, b"alice\0secret\0\0")
    assert result.returncode == cp.EXIT_TEMPFAIL
    assert str(cfg).encode() in result.stderr
    assert run_cp(cfg, b"alice\0secret\0\0", env={"LOGLEVEL": "0"}).stderr == b""


def test_a_missing_config_file_is_a_temporary_failure(tmp_path: Path) -> None:
    result = run_cp(tmp_path / "absent.toml", b"alice\0secret\0\0")
    assert result.returncode == cp.EXIT_TEMPFAIL
    assert b"cannot read" in result.stderr


def imported_modules(cfg: Path, block: bytes) -> set[str]:
    """Every module the command imported before exec'ing the subprogram."""
    env = {"LOGLEVEL": "0", "PYTHONPROFILEIMPORTTIME": "1"}
    result = run_cp(cfg, block, env=env, args=["/bin/true"])
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    return {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}


LEAN_FORBIDDEN = {"click", "rich", "asyncio", "sqlite3", "mailwarden.auth.engine", "mailwarden.cli"}


def test_the_daemon_path_imports_no_click_rich_asyncio_sqlite_or_engine(
    daemon_root: Path, local_cfg: Path
) -> None:
    lean = imported_modules(daemon_root / "daemon.toml", b"alice\0secret\0\0")
    assert "mailwarden.checkpassword" in lean
    assert not lean & LEAN_FORBIDDEN
    assert "mailwarden.model" not in lean  # about 12 ms (protocols/checkpassword.py)
    # The check can fail: the local path does import them (except the command line).
    assert imported_modules(local_cfg, b"alice\0secret\0\0") & LEAN_FORBIDDEN == {
        "asyncio",
        "sqlite3",
        "mailwarden.auth.engine",
    }


def test_checkpassword_help_is_the_command_lines(tmp_path: Path) -> None:
    result = subprocess.run(
        [*MAILWARDEN, "-c", str(tmp_path / "absent.toml"), "checkpassword", "--help"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert b"SUBPROGRAM" in result.stdout
    assert b"fd 3" in result.stdout


# --------------------------------------------------------------------------- the daemon's op


@given(
    login=st.text(min_size=1, max_size=40),
    secret=st.binary(max_size=64),
    lookup_only=st.booleans(),
    rip=st.none() | st.ip_addresses().map(str),
)
def test_a_query_survives_its_wire_form(
    login: str, secret: bytes, lookup_only: bool, rip: str | None
) -> None:
    query = cp.Query(
        login=login, secret=secret, service="pop3", lookup_only=lookup_only, remote_ip=rip
    )
    line = control.request("checkpassword", **query.args())
    request = control.parse_request(line)
    assert request.op == "checkpassword"
    assert cp.parse_query(request.args) == query


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"login": "", "secret": "", "service": "pop3"}, "login"),
        ({"login": "a", "secret": "", "service": 3}, "service"),
        ({"login": "a", "secret": "!!", "service": "pop3"}, "base64"),
        ({"login": "a", "secret": "", "service": "pop3", "lookup_only": "yes"}, "lookup_only"),
        ({"login": "a", "secret": "", "service": "pop3", "rip": 7}, "rip"),
    ],
)
def test_a_malformed_query_is_refused_by_name(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        cp.parse_query(args)


DECISIONS: list[cp.Decision] = [
    cp.Login(  # noqa: S604 - the login shell field, not a subprocess call
        user="erin",
        userdb={"home": "/srv/erin", "uid": "5001"},
        shell="/bin/zsh",
        master_user="admin",
        passdb={"host": "mx2.example"},
    ),
    cp.Refused(reason="credentials"),
    cp.Unknown(),
    cp.TempFail(detail="directory unavailable"),
]


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_decision_survives_its_wire_form(decision: cp.Decision) -> None:
    line = control.reply(cp.decision_to_wire(decision))
    assert cp.decision_from_wire(control.parse_reply(line)) == decision


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [],
        {"decision": "maybe"},
        {"decision": "refused"},
        {"decision": "login", "user": "a", "userdb": {"uid": 5}, "passdb": {}},
        {"decision": "login", "user": 1, "userdb": {}, "passdb": {}},
        {"decision": "login", "user": "a", "userdb": {}, "passdb": []},
    ],
)
def test_a_reply_that_is_no_decision_is_a_protocol_error(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        cp.decision_from_wire(reply)
