"""What README.md promises a newcomer, checked against the files it describes."""

from __future__ import annotations

import http.cookiejar
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mailwarden import config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_dev_sign_in_the_readme_gives_is_the_one_make_run_serves(tmp_path: Path) -> None:
    dev = config.load(ROOT / "etc" / "dev.toml")
    listen = dev.http.listen[0]
    found = re.search(
        r"sign in at <http://([\d.:]+)/ui/admin/login> as `([^`]+)` with the password\s+`([^`]+)`",
        README,
    )
    assert found is not None, "README.md: the web page's development sign-in"
    address, username, password = found.groups()
    assert (address, username, password) == (
        listen,
        dev.http.admin_username,
        dev.http.admin_token,
    )
    assert f"<http://{listen}/ui/login>" in README

    # make run's config, with its files in a temp folder and a free port: sign in.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = (ROOT / "etc" / "dev.toml").read_text().replace("../var/", "var/")
    cfg = tmp_path / "dev.toml"
    cfg.write_text(text.replace(f'"{listen}"', f'"127.0.0.1:{port}"'))
    mailwarden = [sys.executable, "-m", "mailwarden", "--config", str(cfg)]
    subprocess.run([*mailwarden, "init"], check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen([*mailwarden, "serve"], stderr=subprocess.PIPE, text=True)
    try:
        pid_file = tmp_path / "var" / "mailwarden.pid"
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        base = f"http://127.0.0.1:{port}"
        with opener.open(f"{base}/ui/admin/login", timeout=10) as page:
            csrf = re.search(rb'name="csrf" value="([^"]+)"', page.read())
        assert csrf is not None
        form = {"csrf": csrf.group(1).decode(), "username": username, "password": password}
        with opener.open(
            f"{base}/ui/admin/login", data=urllib.parse.urlencode(form).encode(), timeout=10
        ) as signed_in:
            assert signed_in.status == 200
            assert "/ui/admin/" in signed_in.url and "/login" not in signed_in.url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
