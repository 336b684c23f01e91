"""The config builders of the peer tests render what the daemon and Dovecot read."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mailwarden.config import loads
from tests.peers.configs import (
    DAEMON,
    GUARD_RULE_IP,
    daemon_toml,
    dovecot_conf,
    listeners,
    passwd_file,
)


def test_the_daemon_toml_lays_keywords_over_the_shared_sections() -> None:
    text = daemon_toml(
        passwords={"scheme": "SHA512-CRYPT", "rehash": None},
        dovecot={"failure_delay": 0.2},
        http={
            "enabled": True,
            "listen": ["127.0.0.1:8080"],
            "nginx_backends": {"": {"imap": "h:1"}},
        },
        guard={"allow_networks": [], "redis": {"url": "redis://x"}, "rules": [GUARD_RULE_IP]},
    )
    data = tomllib.loads(text)
    assert data["directory"] == DAEMON["directory"]
    assert data["passwords"] == {"scheme": "SHA512-CRYPT"}
    assert data["dovecot"] == {**DAEMON["dovecot"], "failure_delay": 0.2}
    assert data["http"]["nginx_backends"] == {"": {"imap": "h:1"}}
    assert data["guard"] == {
        "allow_networks": [],
        "redis": {"url": "redis://x"},
        "rules": [GUARD_RULE_IP],
    }
    config = loads(text)  # the daemon accepts it
    assert config.http.listen == ("127.0.0.1:8080",)
    assert config.dovecot.failure_delay == 0.2


def test_a_section_given_as_none_is_left_out() -> None:
    assert "dovecot" not in tomllib.loads(daemon_toml(dovecot=None))


def test_the_dovecot_conf_nests_blocks_and_keeps_the_shared_settings() -> None:
    root = Path("/srv/t")
    text = dovecot_conf(
        root,
        settings={"auth_failure_delay": 0},
        passdbs=[passwd_file(root / "passwd", master="yes")],
        services={"auth": listeners({"auth-client": "0600"}, user="root")},
    )
    assert text.startswith("protocols =\nbase_dir = /srv/t/run\n")
    assert "log_path = /srv/t/dovecot.log\nssl = no\nauth_failure_delay = 0\n" in text
    assert "passdb {\n  driver = passwd-file\n  args = /srv/t/passwd\n  master = yes\n}\n" in text
    assert "unix_listener anvil-auth-penalty {\n    mode = 0\n" in text
    assert text.endswith(
        "service auth {\n  user = root\n  unix_listener auth-client {\n    mode = 0600\n  }\n}\n"
    )
