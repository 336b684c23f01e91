"""What `make install` puts on a machine: the example config and the systemd unit."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- make install

SYSTEM_PYTHON = "/usr/bin/python3"


def _wheelhouse() -> Path:
    """Wheels of every dependency (and of the build tools) for the system Python, built
    once and kept in .cache/ (keyed by pyproject.toml), so that installs run offline."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    wheels = ROOT / ".cache" / f"install-wheels-{key}"
    if (wheels / "complete").exists():
        return wheels
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=300)
        partial = Path(tmp) / "wheels"
        pip = [str(venv / "bin" / "pip"), "-q", "--disable-pip-version-check"]
        subprocess.run(
            [*pip, "wheel", "-w", str(partial), str(ROOT), "setuptools>=77", "wheel"],
            check=True,
            timeout=900,
        )
        for built in partial.glob("mailwarden-*.whl"):
            built.unlink()  # make install builds the checkout itself
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.copytree(partial, wheels)
    (wheels / "complete").touch()
    return wheels


def _as_nobody(*args: str, fd3: bytes | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *args]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if fd3 is None:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, env=env, **kw
        )
    read, write = os.pipe()
    os.write(write, fd3)
    os.close(write)
    try:
        return subprocess.run(
            ["python3", "-c", TO_FD3, str(read), *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
            pass_fds=(read,),
            **kw,
        )
    finally:
        os.close(read)


TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A temp folder that other users may enter (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mw-install-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs commands as nobody: needs root")
@pytest.mark.skipif(
    not Path(SYSTEM_PYTHON).exists() or shutil.which("setpriv") is None,
    reason="needs /usr/bin/python3 and setpriv",
)
def test_a_staged_install_runs_at_its_prefix_as_an_unprivileged_user(
    world_readable_tmp: Path,
) -> None:
    wheels = _wheelhouse()
    stage = world_readable_tmp / "stage"
    prefix = world_readable_tmp / "opt" / "mailwarden"
    subprocess.run(
        [
            "make",
            "-C",
            str(ROOT),
            "install",
            f"DESTDIR={stage}",
            f"PREFIX={prefix}",
            f"WHEELS={wheels}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    staged = Path(f"{stage}{prefix}")
    unit = (stage / "etc" / "systemd" / "system" / "mailwarden.service").read_text()
    assert f"ExecStart={prefix}/bin/mailwarden " in unit
    assert (stage / "etc" / "mailwarden" / "mailwarden.toml").exists()
    prefix.parent.mkdir(mode=0o755)
    subprocess.run(["cp", "-a", str(staged), str(prefix)], check=True, timeout=120)
    shutil.rmtree(stage)  # nothing may still point there
    launcher = (prefix / "bin" / "mailwarden").read_text()
    assert launcher.startswith(f"#!{SYSTEM_PYTHON} -IS\n") and str(stage) not in launcher
    leftovers = subprocess.run(
        ["grep", "-rl", str(stage), str(prefix)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == "", leftovers.stdout

    mw = str(prefix / "bin" / "mailwarden")
    version = _as_nobody(mw, "--version")
    assert version.returncode == 0, version.stderr
    assert "mailwarden, version" in version.stdout

    # A config and database that nobody owns, as Dovecot's auth user would have them.
    site = world_readable_tmp / "site"
    site.mkdir()
    os.chown(site, pwd.getpwnam("nobody").pw_uid, -1)
    cfg = site / "mw.toml"
    cfg.write_text(
        '[directory]\npath = "mw.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        '[dovecot]\nclient_socket = "run/c"\nmaster_socket = "run/m"\nuserdb_socket = "run/u"\n'
        '[server]\ncontrol_socket = ""\n'
    )
    for args, stdin in (
        (("init",), None),
        (("user", "add", "alice", "--password-stdin"), "s3cret\n"),
        (("check-config",), None),
    ):
        done = _as_nobody(mw, "-c", str(cfg), *args, input=stdin)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    right = _as_nobody(mw, "-c", str(cfg), "checkpassword", "/bin/true", fd3=b"alice\0s3cret\0\0")
    assert right.returncode == 0, right.stderr
    wrong = _as_nobody(mw, "-c", str(cfg), "checkpassword", "/bin/true", fd3=b"alice\0nope\0\0")
    assert wrong.returncode == 1, wrong.stderr
    # The daemon's hashing worker processes: the system Python must find the package.
    worker = _as_nobody(
        SYSTEM_PYTHON,
        "-IS",
        "-c",
        HASH_IN_A_WORKER.replace("@LIB@", str(prefix / "lib" / "mailwarden")),
    )
    assert worker.returncode == 0 and worker.stdout == "True\n", worker.stderr


# What serve does with hashing.processes = true, run as the launcher runs Python.
HASH_IN_A_WORKER = """
import asyncio, site
site.addsitedir("@LIB@")
from mailwarden import schemes
from mailwarden.hashing.pool import Hasher

async def main():
    hasher = Hasher(workers=1, processes=True)
    stored = schemes.parse(schemes.generate(b"pw", "ARGON2ID"))
    print(await hasher.verify(b"pw", stored, heavy=True))
    hasher.close()
    await hasher.wait_closed()

asyncio.run(main())
"""


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
