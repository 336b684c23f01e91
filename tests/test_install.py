"""What `make install` puts on a machine: the example config and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailwarden import config

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def test_the_example_production_config_is_valid() -> None:
    cfg = config.load(ROOT / "etc" / "mailwarden.toml")
    # Postfix reads its socket inside its chroot, as Debian sets it up.
    assert cfg.dovecot.client_socket == "/var/spool/postfix/private/auth"
    assert cfg.dovecot.client_socket_user == "postfix"
    # The sockets of Dovecot's processes are not Postfix's (issue 15, item 23;
    # tests/peers/test_example_config.py runs it against both).
    assert cfg.dovecot.login_socket_user == "dovenull"
    assert cfg.server.control_socket.startswith("/run/mailwarden/")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (ROOT / "etc" / "systemd" / "mailwarden.service").read_text()
    assert "serve" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # As `make install` does: the unit names the install prefix (here: this venv).
    installed = tmp_path / "mailwarden.service"
    installed.write_text(unit.replace("/opt/mailwarden", str(VENV)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Unknown or misspelt settings are only warnings: there must be none.
    assert "Unknown" not in done.stderr and "ignoring" not in done.stderr.lower(), done.stderr
