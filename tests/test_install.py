"""What `make install` puts on a machine: the example config and the systemd unit."""

from __future__ import annotations

import re
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


def _installed_unit(tmp_path: Path) -> Path:
    installed = tmp_path / "mailwarden.service"
    unit = (ROOT / "etc" / "systemd" / "mailwarden.service").read_text()
    installed.write_text(unit.replace("/opt/mailwarden", str(VENV)))
    return installed


def test_the_systemd_unit_waits_for_readiness() -> None:
    unit = (ROOT / "etc" / "systemd" / "mailwarden.service").read_text()
    # READY=1 after every listener is bound (tests/test_sdnotify.py), from the main
    # process only.
    assert "\nType=notify\n" in unit and "\nNotifyAccess=main\n" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_is_hardened_to_an_exposure_of_at_most_3(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for mailwarden\.service: (\d+\.\d+)", done.stdout)
    if found is None and "--offline" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 252)")
    assert found is not None, done.stdout + done.stderr
    assert float(found.group(1)) <= 3.0, done.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_socket_unit_for_activation_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    _installed_unit(tmp_path)
    socket_unit = tmp_path / "mailwarden.socket"
    socket_unit.write_text((ROOT / "etc" / "systemd" / "mailwarden.socket").read_text())
    done = subprocess.run(
        ["systemd-analyze", "verify", str(socket_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The path the daemon matches it by (mailwarden/activation.py).
    example = config.load(ROOT / "etc" / "mailwarden.toml")
    assert f"ListenStream={example.dovecot.client_socket}\n" in socket_unit.read_text()
