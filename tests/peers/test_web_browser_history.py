"""The login history in headless Chromium against a real ``mailwarden serve`` with
``[history] enabled = true``: a stranger logs in with alice's password through
Dovecot's ``doveadm auth test`` on the daemon's socket; alice sees the stranger's
address on her page and presses "This wasn't me": the old password stops working
over the socket at once, the new one works.

Screenshots go to ``test-artifacts/screenshots/`` (tests/peers/test_web_browser.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers import test_web_browser
from tests.peers.configs import daemon_toml
from tests.peers.conftest import free_port, private_dir, running_serve
from tests.peers.test_doveadm import populate
from tests.peers.test_web_browser import Node, click, doveadm, fill, shot, text

# The same marks: a peer test, skipped without doveadm, chromium or chromium-driver;
# and the same headless Chromium, as this module's fixture ``chromium``.
pytestmark = test_web_browser.pytestmark
chromium = test_web_browser.browser

STRANGER = "203.0.113.50"


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with private_dir("web-history") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        port = free_port()
        (root / "mailwarden.toml").write_text(
            daemon_toml(
                passwords={"scheme": "SHA512-CRYPT"},
                http={
                    "enabled": True,
                    "listen": [f"127.0.0.1:{port}"],
                    "session_secret_file": "session.key",
                },
                history={"enabled": True, "flush_interval_ms": 50},
            )
        )
        (root / "session.key").write_bytes(os.urandom(32).hex().encode())
        (root / "min.conf").write_text("ssl = no\n")
        ready = (str(root / "run" / "auth-client"), ("127.0.0.1", port))
        with running_serve(root / "mailwarden.toml", ready=ready):
            yield Node(root, port)
        log_text = (root / "serve.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text


def test_a_user_sees_a_strangers_login_and_secures_the_account(node: Node, chromium: Any) -> None:
    d = chromium
    assert doveadm(node, "alice", "secret", rip=STRANGER) == 0
    d.delete_all_cookies()
    d.get(node.url + "/ui/login")
    fill(d, username="alice", password="secret")
    click(d, "signin")
    assert d.current_url.endswith("/ui/me")
    click(d, "history-link")
    # Written off the login path within flush_interval_ms: reload until it is there.
    deadline = time.monotonic() + 15.0
    while STRANGER not in text(d):
        assert time.monotonic() < deadline, text(d)
        time.sleep(0.1)
        d.get(node.url + "/ui/me/history")
    shot(d, "31-recent-logins")

    fill(d, **{"not-me-current": "secret", "not-me-new": "short", "not-me-repeat": "short"})
    click(d, "not-me")
    assert "at least 10 characters" in text(d)
    new = "nobody else knows this one"
    fill(d, **{"not-me-current": "secret", "not-me-new": new, "not-me-repeat": new})
    click(d, "not-me")
    assert "every other session was signed out" in text(d)
    shot(d, "32-account-secured")
    assert doveadm(node, "alice", "secret", rip=STRANGER) == 77
    assert doveadm(node, "alice", new) == 0
