"""``mailwarden checkpassword``: the fd-3 block parser, then the real command as a process.

The process tests give the command a real fd 3 (a pipe) and a tiny subprogram that
prints its environment as JSON, exactly as qmail-popup and Dovecot call it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.protocols import checkpassword as cp
from tests.classic.conftest import MAILWARDEN

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


# --------------------------------------------------------------------------- parser


def test_a_block_with_all_three_fields_parses() -> None:
    block = cp.parse_block(b"alice\0secret\0<1.2@host>\0")
    assert block.login == "alice"
    assert block.password.value == b"secret"
    assert block.timestamp == b"<1.2@host>"


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


def test_a_right_password_execs_the_subprogram_with_the_account_environment(
    ready: Path,
) -> None:
    out = shown(run_cp(ready, b"alice\0secret\0\0", env={"SERVICE": "pop3"}))
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


@pytest.mark.parametrize("block", [b"alice\0wrong\0\0", b"nobody\0secret\0\0"])
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


def test_apop_uses_the_timestamp_as_challenge(ready: Path) -> None:
    challenge = b"<1896.697170952@dbc.mtview.ca.us>"
    digest = hashlib.md5(challenge + b"secret").hexdigest().encode()  # noqa: S324
    assert shown(run_cp(ready, b"alice\0" + digest + b"\0" + challenge + b"\0"))
    wrong = hashlib.md5(challenge + b"nope").hexdigest().encode()  # noqa: S324
    result = run_cp(ready, b"alice\0" + wrong + b"\0" + challenge + b"\0")
    assert result.returncode == cp.EXIT_WRONG


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
