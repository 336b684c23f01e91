"""``mailwarden pam`` behind Linux-PAM's pam_exec, driven by pamtester.

The PAM service file must live in /etc/pam.d, which is the machine's. So each
pamtester run happens in a private mount namespace (``unshare -m``, private
propagation) where a temporary directory is bind-mounted over /etc/pam.d: the
machine's real /etc is never written. Without permission to unshare the tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailwarden import cli
from tests.classic.conftest import (
    APP_PASSWORD,
    EXPIRED_APP_PASSWORD,
    MAILWARDEN,
    UNKNOWN_APP_PASSWORD,
)

PAMTESTER = shutil.which("pamtester")
UNSHARE = shutil.which("unshare")


def _can_unshare() -> bool:
    if UNSHARE is None or PAMTESTER is None:
        return False
    probe = subprocess.run(
        [UNSHARE, "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not _can_unshare(), reason="pamtester or a private mount namespace (unshare -m) unavailable"
    ),
]


def pamtester(
    ready: Path, tmp_path: Path, stack: str, user: str, password: str, *ops: str
) -> subprocess.CompletedProcess[str]:
    """Run pamtester for service ``mwtest`` whose file is ``stack`` (with {cmd} filled in)."""
    pamd = tmp_path / "pam.d"
    pamd.mkdir(exist_ok=True)
    cmd = " ".join([*MAILWARDEN, "-c", str(ready), "pam"])
    (pamd / "mwtest").write_text("#%PAM-1.0\n" + stack.format(cmd=cmd))
    assert UNSHARE is not None and PAMTESTER is not None
    script = f'mount --bind "$1" /etc/pam.d && exec {PAMTESTER} mwtest "$2" {" ".join(ops)}'
    return subprocess.run(
        [UNSHARE, "-m", "--propagation", "private", "sh", "-c", script, "sh", str(pamd), user],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SOLE = (
    "auth     required pam_exec.so expose_authtok quiet {cmd}\n"
    "account  required pam_exec.so quiet {cmd}\n"
)
IMAP_ONLY = (
    "auth     required pam_exec.so expose_authtok quiet {cmd} service=imap\n"
    "account  required pam_exec.so quiet {cmd}\n"
)
POP3 = "auth     required pam_exec.so expose_authtok quiet {cmd} service=pop3\n"
POP3_OR_IMAP = "auth     required pam_exec.so expose_authtok quiet {cmd} service=pop3|imap\n"
SUFFICIENT = (
    "auth     sufficient pam_exec.so expose_authtok quiet {cmd} quiet\n"
    "auth     required   pam_deny.so\n"
)


@pytest.mark.parametrize("password", ["secret", APP_PASSWORD])
def test_pamtester_authenticates_a_right_password(
    ready: Path, tmp_path: Path, password: str
) -> None:
    result = pamtester(ready, tmp_path, SOLE, "alice", password, "authenticate", "acct_mgmt")
    assert "successfully authenticated" in result.stdout, result.stderr
    assert "account management done" in result.stdout, result.stderr


@pytest.mark.parametrize(
    "user,password",
    [
        ("alice", "wrong"),
        ("nobody", "secret"),
        ("alice", EXPIRED_APP_PASSWORD),
        ("alice", UNKNOWN_APP_PASSWORD),
        ("nobody", APP_PASSWORD),
    ],
)
def test_pamtester_rejects_a_wrong_password_or_unknown_user(
    ready: Path, tmp_path: Path, user: str, password: str
) -> None:
    result = pamtester(ready, tmp_path, SOLE, user, password, "authenticate")
    assert result.returncode != 0
    assert "successfully authenticated" not in result.stdout


def test_the_account_phase_rejects_a_disabled_account(ready: Path, tmp_path: Path) -> None:
    result = pamtester(ready, tmp_path, SOLE, "dave", "", "acct_mgmt")
    assert result.returncode != 0
    assert "account management done" not in result.stdout


def test_service_switches_are_enforced(ready: Path, tmp_path: Path) -> None:
    assert pamtester(ready, tmp_path, POP3, "carol", "carolpw", "authenticate").returncode != 0
    assert pamtester(ready, tmp_path, IMAP_ONLY, "carol", "carolpw", "authenticate").returncode == 0
    # service=pop3|imap: one switch on is enough (OR, as pam_mapi).
    assert (
        pamtester(ready, tmp_path, POP3_OR_IMAP, "carol", "carolpw", "authenticate").returncode == 0
    )


def test_sufficient_before_another_module_short_circuits_on_success(
    ready: Path, tmp_path: Path
) -> None:
    ok = pamtester(ready, tmp_path, SUFFICIENT, "alice", "secret", "authenticate")
    assert ok.returncode == 0, ok.stderr
    denied = pamtester(ready, tmp_path, SUFFICIENT, "alice", "wrong", "authenticate")
    assert denied.returncode != 0


# --------------------------------------------------------------------------- exit codes


def run_pam(ready: Path, pam_type: str, user: str, stdin: bytes, *options: str) -> int:
    env = {**os.environ, "PAM_USER": user, "PAM_TYPE": pam_type, "PAM_SERVICE": "smtp"}
    return subprocess.run(
        [*MAILWARDEN, "-c", str(ready), "pam", *options],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_exit_codes_are_the_pam_results(ready: Path, cfg: Path) -> None:
    assert run_pam(ready, "auth", "alice", b"secret\0") == cli.PAM_SUCCESS
    assert run_pam(ready, "auth", "alice", b"wrong\0") == cli.PAM_AUTH_ERR
    assert run_pam(ready, "account", "dave", b"") == cli.PAM_ACCT_EXPIRED
    assert run_pam(ready, "account", "nobody", b"") == cli.PAM_USER_UNKNOWN
    assert run_pam(ready, "auth", "alice", b"secret\0", "bogus") == cli.PAM_SERVICE_ERR
    assert run_pam(ready, "session", "alice", b"") == cli.PAM_SERVICE_ERR
    (ready.parent / "data" / "mw.db").unlink()
    assert run_pam(ready, "auth", "alice", b"secret\0") == cli.PAM_AUTHINFO_UNAVAIL
