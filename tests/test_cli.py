"""The admin command line, run in-process with click's runner and as a real process."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailwarden.cli import main, transfer
from mailwarden.directories.sqlite import export as sqlite_export
from mailwarden.errors import TemporaryFailure
from tests.helpers import export_workers

MAILWARDEN = [sys.executable, "-m", "mailwarden"]


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "mw.toml"
    path.write_text(
        '[directory]\npath = "data/mw.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        '[auth]\nmaster_user_separator = "*"\n'
        # Every socket under the test's folder, never the machine's /run/mailwarden.
        '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = "run/auth-master"\n'
        'userdb_socket = "run/auth-userdb"\n'
        '[server]\npid_file = "data/mw.pid"\ncontrol_socket = "run/control"\n'
    )
    return path


def run(cfg: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(cfg), *args], input=stdin)


@pytest.fixture
def ready(cfg: Path) -> Path:
    assert run(cfg, "init").exit_code == 0
    r = run(
        cfg,
        "user",
        "add",
        "alice@example.com",
        "--alt",
        "al@example.com",
        "--password-stdin",
        "--set",
        "home=/var/mail/alice",
        "--set",
        "uid_number=5000",
        stdin="secret\n",
    )
    assert r.exit_code == 0, r.output
    return cfg


def test_init_creates_the_database_beside_the_config(cfg: Path) -> None:
    r = run(cfg, "init")
    assert r.exit_code == 0, r.output
    assert (cfg.parent / "data" / "mw.db").exists()
    assert "0 accounts" in r.output
    assert run(cfg, "init").exit_code == 0  # idempotent


def test_commands_before_init_are_a_configuration_error_naming_the_file(cfg: Path) -> None:
    r = run(cfg, "user", "list")
    assert r.exit_code == 78, r.output
    assert "mailwarden init" in r.output and f"{cfg}: directory.path" in r.output
    assert "temporary" not in r.output


def test_no_config_file_and_no_database_says_so_and_exits_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailwarden import config

    default_db = Path(config.Config().directory.path)
    if default_db.exists():
        pytest.skip(f"this machine has {default_db}")
    monkeypatch.delenv("MAILWARDEN_CONFIG", raising=False)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "absent.toml")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["user", "list"])
    assert r.exit_code == 78, r.output
    assert "no config file found" in r.output and str(default_db) in r.output


def test_auth_test_accepts_the_right_password_and_prints_fields(ready: Path) -> None:
    r = run(ready, "auth", "test", "Alice@Example.com", "secret")
    assert r.exit_code == 0, r.output
    assert "auth succeeded" in r.output
    assert "user=alice@example.com" in r.output
    assert "home=/var/mail/alice" in r.output and "uid=5000" in r.output


def test_auth_test_exit_codes_match_doveadm(ready: Path) -> None:
    assert run(ready, "auth", "test", "alice@example.com", "wrong").exit_code == 77
    assert run(ready, "auth", "test", "nobody@example.com", "secret").exit_code == 77
    assert (
        run(ready, "auth", "test", "al@example.com", "--password-stdin", stdin="secret\n").exit_code
        == 0
    )


def test_disable_then_enable_toggles_login_with_the_disabled_reason(ready: Path) -> None:
    assert run(ready, "user", "disable", "alice@example.com").exit_code == 0
    r = run(ready, "auth", "test", "alice@example.com", "secret")
    assert r.exit_code == 77 and "reason=Account not enabled" in r.output
    assert run(ready, "user", "enable", "alice@example.com").exit_code == 0
    assert run(ready, "auth", "test", "alice@example.com", "secret").exit_code == 0


def test_service_switch_is_set_with_user_set(ready: Path) -> None:
    assert run(ready, "user", "set", "alice@example.com", "service.pop3=off").exit_code == 0
    assert run(ready, "auth", "test", "alice@example.com", "secret", "-s", "pop3").exit_code == 77
    assert run(ready, "auth", "test", "alice@example.com", "secret", "-s", "imap").exit_code == 0


def test_user_set_refuses_unknown_fields_and_bad_values(ready: Path) -> None:
    r = run(ready, "user", "set", "alice@example.com", "colour=blue")
    assert r.exit_code == 1 and "not a field that can be set" in r.output
    r = run(ready, "user", "set", "alice@example.com", "quota_bytes=lots")
    assert r.exit_code == 1 and "quota_bytes: expected a size" in r.output
    r = run(ready, "user", "set", "alice@example.com", "quota_messages=lots")
    assert r.exit_code == 1 and "quota_messages: expected an integer" in r.output


def test_user_set_reads_the_quota_in_units_as_the_web_page_does(ready: Path) -> None:
    assert run(ready, "user", "set", "alice@example.com", "quota_bytes=1.5G").exit_code == 0
    r = run(ready, "user", "show", "alice@example.com", "--format", "json")
    assert json.loads(r.output)["quota_bytes"] == 3 * 1024**3 // 2
    assert run(ready, "user", "set", "alice@example.com", "quota_bytes=500M").exit_code == 0
    r = run(ready, "user", "show", "alice@example.com", "--format", "json")
    assert json.loads(r.output)["quota_bytes"] == 500 * 1024**2
    r = run(ready, "user", "set", "nobody", "home=/x")
    assert r.exit_code == 67


def test_passwd_changes_the_password(ready: Path) -> None:
    r = run(ready, "user", "passwd", "alice@example.com", "--password-stdin", stdin="n3w\n")
    assert r.exit_code == 0, r.output
    assert run(ready, "auth", "test", "alice@example.com", "secret").exit_code == 77
    assert run(ready, "auth", "test", "alice@example.com", "n3w").exit_code == 0


def test_show_never_prints_the_hash_and_list_finds_by_pattern(ready: Path) -> None:
    r = run(ready, "user", "show", "alice@example.com", "--json")
    data = json.loads(r.output)
    assert data["password"] == "<set>" and data["alternate_addresses"] == ["al@example.com"]
    assert "$6$" not in r.output
    r = run(ready, "user", "list", "al*", "--json")
    assert [a["uid"] for a in json.loads(r.output)] == ["alice@example.com"]
    assert json.loads(run(ready, "user", "list", "zz*", "--json").output) == []


def test_duplicate_and_deleted_accounts(ready: Path) -> None:
    r = run(ready, "user", "add", "al@example.com", "--no-password")
    assert r.exit_code == 1  # the address is alice's alternate
    assert run(ready, "user", "del", "alice@example.com").exit_code == 0
    assert run(ready, "user", "del", "alice@example.com").exit_code == 67
    assert run(ready, "auth", "test", "alice@example.com", "secret").exit_code == 77


def test_master_user_login_with_the_separator(ready: Path) -> None:
    assert (
        run(
            ready,
            "user",
            "add",
            "admin",
            "--password-stdin",
            "--set",
            "master=yes",
            stdin="m4ster\n",
        ).exit_code
        == 0
    )
    r = run(ready, "auth", "test", "alice@example.com*admin", "m4ster")
    assert r.exit_code == 0 and "master_user=admin" in r.output
    r = run(ready, "auth", "test", "alice@example.com", "m4ster", "-M", "admin")
    assert r.exit_code == 0 and "user=alice@example.com" in r.output


def test_import_reports_bad_lines_with_numbers_and_keeps_the_rest(
    ready: Path, tmp_path: Path
) -> None:
    f = tmp_path / "passwd"
    f.write_text(
        "# comment\n"
        "bob@example.com:{PLAIN}bobpw:1001:1001::/home/bob::userdb_mail=maildir:~/M\n"
        "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=:notanumber:1\n"
        "\n"
        "dave:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=::::::allow_nets=127.0.0.0/8\n"
    )
    r = run(ready, "import", "passwd-file", str(f), "-q")
    assert r.exit_code == 65, r.output  # a partial import: EX_DATAERR, with its summary
    assert "2 created" in r.output and "1 line(s) with errors" in r.output
    assert "3" in r.output  # the bad line's number is reported
    assert run(ready, "auth", "test", "bob@example.com", "bobpw").exit_code == 0
    assert run(ready, "auth", "test", "dave", "secret", "--rip", "127.0.0.1").exit_code == 0
    assert run(ready, "auth", "test", "dave", "secret", "--rip", "10.0.0.1").exit_code == 77
    again = run(ready, "import", "passwd-file", str(f), "-q")
    assert "0 created" in again.output and "2 existing skipped" in again.output


def test_export_then_import_elsewhere_keeps_logins_working(ready: Path, tmp_path: Path) -> None:
    exported = tmp_path / "out.passwd"
    assert run(ready, "export", "passwd-file", str(exported)).exit_code == 0
    assert "alice@example.com:{SHA512-CRYPT}$6$" in exported.read_text()
    other = tmp_path / "other.toml"
    other.write_text('[directory]\npath = "other.db"\n')
    assert run(other, "init").exit_code == 0
    assert run(other, "import", "passwd-file", str(exported), "-q").exit_code == 0
    assert run(other, "auth", "test", "al@example.com", "secret").exit_code == 0


def test_an_export_that_fails_midway_leaves_the_old_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out.passwd"
    target.write_text("old\n")
    with pytest.raises(TemporaryFailure), transfer._output(str(target)) as fh:
        fh.write("alice:{PLAIN}x::::::\n")
        raise TemporaryFailure("directory went away")  # what a read error mid-export is
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.passwd"]  # no temporary left
    with transfer._output(str(target)) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"


ODD_PASSWD = "".join(
    f"{name}{n}@exämple.org:{{PLAIN}}pw {n}:{5000 + n}:5000:Jörg Müller:/home/{n}::"
    f"mailwarden_profile_postal_address=Straße%2C%201 mailwarden_alt=x{n}@example.org\n"
    for n, name in enumerate(["jörg", "Alice", "bob", "ZED", "émile", "_x"] * 3)
)


def test_export_in_worker_processes_writes_what_one_process_writes(
    ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.passwd"
    source.write_text(ODD_PASSWD)
    assert run(ready, "import", "passwd-file", str(source), "-q").exit_code == 0
    # Workers for any directory, two accounts a slice: ten slices over two workers.
    monkeypatch.setattr(sqlite_export, "PARALLEL_FROM", 1)
    monkeypatch.setattr(sqlite_export, "SLICE", 2)
    one, two = tmp_path / "one.passwd", tmp_path / "two.passwd"
    assert run(ready, "export", "passwd-file", str(one), "--workers", "1").exit_code == 0
    r = run(ready, "export", "passwd-file", str(two), "--workers", "2")
    assert r.exit_code == 0, r.output
    assert "exported 19 account(s)" in r.output
    assert one.read_bytes() == two.read_bytes()
    assert "Straße%2C%201" in two.read_text() and len(two.read_text().splitlines()) == 19
    piped = run(ready, "export", "passwd-file", "--workers", "2")
    assert piped.exit_code == 0 and piped.stdout == one.read_text()
    assert export_workers() == []


def test_an_export_whose_worker_cannot_read_exits_75_and_writes_no_file(
    ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.passwd"
    source.write_text(ODD_PASSWD)
    assert run(ready, "import", "passwd-file", str(source), "-q").exit_code == 0
    with sqlite3.connect(ready.parent / "data" / "mw.db") as conn:
        conn.execute("UPDATE accounts SET userdb_fields = '[' WHERE uid = 'ZED15@exämple.org'")
    monkeypatch.setattr(sqlite_export, "PARALLEL_FROM", 1)
    monkeypatch.setattr(sqlite_export, "SLICE", 2)
    target = tmp_path / "out.passwd"
    r = run(ready, "export", "passwd-file", str(target), "--workers", "2")
    assert r.exit_code == 75, r.output
    assert "malformed account data" in r.output and "export worker" in r.output
    assert not [p.name for p in tmp_path.iterdir() if "out.passwd" in p.name]  # no temporary
    assert export_workers() == []


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_import_names_the_lines_of_repeated_and_refused_names(
    ready: Path, tmp_path: Path, from_stdin: bool
) -> None:
    text = (
        "new@example.com:{PLAIN}a\n"
        "NEW@example.com:{PLAIN}b\n"
        "x:{PLAIN}c::::::mailwarden_mail=al@example.com\n"
        "y:{PLAIN}d::::::mailwarden_alt=new@example.com\n"
        "z:{PLAIN}e\n"
    )
    source = tmp_path / "in.passwd"
    source.write_text(text)
    if from_stdin:
        r = run(ready, "import", "passwd-file", "-", "-q", stdin=text)
    else:
        r = run(ready, "import", "passwd-file", str(source), "-q")
    assert r.exit_code == 65, r.output
    assert "2 created" in r.output and "3 line(s) with errors" in r.output
    output = " ".join(r.output.split())
    assert re.search(r"\b2 \W*user 'NEW@example.com' is already defined on line 1", output)
    # al@example.com is alice's: the directory refuses line 3, and its line is found.
    assert re.search(r"\b3 \W*address 'al@example.com' already belongs to", output)
    assert re.search(r"\b4 \W*address 'new@example.com' is already used on line 1", output)


def test_pw_generates_and_verifies_like_doveadm(cfg: Path) -> None:
    r = run(cfg, "pw", "-s", "SSHA256", "-p", "secret")
    assert r.exit_code == 0 and r.output.startswith("{SSHA256}")
    value = r.output.strip()
    r = run(cfg, "pw", "-t", value, "-p", "secret")
    assert r.exit_code == 0 and r.output.strip() == f"{value} (verified)"
    r = run(cfg, "pw", "-t", value, "-p", "wrong")
    assert r.exit_code == 75 and "Password mismatch" in r.output
    r = run(cfg, "pw", "-s", "NOPE", "-p", "x")
    assert r.exit_code == 2 and "Unknown scheme: NOPE" in r.output  # as in every command
    assert "ARGON2ID" in run(cfg, "pw", "-l").output.split()


def test_check_config_reports_the_key_and_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[directory]\nreaders = -1\n")
    r = CliRunner().invoke(main, ["--config", str(bad), "check-config"])
    assert r.exit_code == 78
    assert "directory.readers: expected an integer >= 1" in r.output


def test_serve_starts_logs_and_stops_cleanly_on_sigterm(ready: Path) -> None:
    pid_file = ready.parent / "data" / "mw.pid"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*MAILWARDEN, "--config", str(ready), "serve"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        assert pid_file.read_text().strip() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "serving" in stderr and "stopped" in stderr
    assert not pid_file.exists()


def test_serve_admin_api_writes_what_the_cli_reads(ready: Path) -> None:
    """The daemon's admin API and the CLI change the same directory, through one AccountAdmin."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pid_file = ready.parent / "data" / "mw.pid"
    ready.write_text(
        ready.read_text()
        + f'[http]\nenabled = true\nlisten = ["127.0.0.1:{port}"]\n'
        + 'auth_username = "u"\nauth_password = "p"\nadmin_token = "tok"\n'
    )
    # The shared admin_token only bootstraps the first administrator: scripts use a
    # named token, made here by the CLI in the state store the daemon reads too.
    made = run(ready, "token", "add", "script", "--scope", "admin")
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    assert token.startswith("mwt_")
    proc = subprocess.Popen(
        [*MAILWARDEN, "--config", str(ready), "serve"], stderr=subprocess.PIPE, text=True
    )

    def api(method: str, path: str, data: object) -> dict[str, object]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(data).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            result: dict[str, object] = json.loads(resp.read())
            return result

    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        created = api("POST", "/api/v1/accounts", {"uid": "bob", "password": "pw1"})
        assert created["uid"] == "bob"
        shown = run(ready, "user", "show", "bob", "--json")
        assert shown.exit_code == 0 and json.loads(shown.output)["password"] == "<set>"
        assert run(ready, "auth", "test", "bob", "--password-stdin", stdin="pw1\n").exit_code == 0
        api("PATCH", "/api/v1/accounts/bob", {"status": "disabled"})
        assert run(ready, "auth", "test", "bob", "--password-stdin", stdin="pw1\n").exit_code == 77
        # Both changes are in the audit log, by the token, from the loopback address.
        audit = run(ready, "audit", "--user", "bob", "--json")
        assert audit.exit_code == 0, audit.output
        entries = json.loads(audit.output)
        assert [(e["actor"], e["action"]) for e in entries] == [
            ("token:script", "account.update"),
            ("token:script", "account.create"),
        ]
        assert entries[0]["fields"] == ["status"] and entries[0]["source"] == "127.0.0.1"
        assert "pw1" not in audit.output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_an_unknown_scheme_exits_2_in_every_command(ready: Path) -> None:
    for args in (
        ("pw", "-s", "NOPE", "-p", "x"),
        ("pw", "-s", "SHA256.NOPE", "-p", "x"),
        ("pw", "-t", "{NOPE}abc", "-p", "x"),
        ("user", "add", "bob", "--scheme", "nope", "--password-stdin"),
        ("user", "passwd", "alice@example.com", "--scheme", "NOPE", "--password-stdin"),
    ):
        r = run(ready, *args, stdin="pw\n")
        assert r.exit_code == 2, (args, r.output)
        assert "nknown" in r.output and "scheme" in r.output, (args, r.output)


def test_pw_digest_md5_without_a_username_fails_as_doveadm_does(cfg: Path) -> None:
    for args in (("-s", "DIGEST-MD5"), ("-t", "{DIGEST-MD5}94390127e00e81fb26b41c50ceef9fed")):
        r = run(cfg, "pw", *args, "-p", "x")
        assert r.exit_code == 75 and "username not given" in r.output, r.output
    r = run(cfg, "pw", "-s", "DIGEST-MD5", "-p", "x", "-u", "bob")
    assert r.exit_code == 0 and r.output == "{DIGEST-MD5}94390127e00e81fb26b41c50ceef9fed\n"
    if shutil.which("doveadm") is None:
        return
    # Dovecot's own doveadm, for comparison: the same exit code and words.
    conf = cfg.parent / "dovecot.conf"
    conf.write_text("ssl = no\n")
    real = subprocess.run(
        ["doveadm", "-c", str(conf), "pw", "-s", "DIGEST-MD5", "-p", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert real.returncode == 75 and "username not given" in real.stderr


def test_password_prompts_come_after_the_checks(ready: Path) -> None:
    # No --password-stdin and no input: a prompt would read EOF and abort (exit 1).
    r = run(ready, "user", "passwd", "nobody@example.com")
    assert r.exit_code == 67 and "no account" in r.output and "password" not in r.output
    r = run(ready, "user", "add", "alice@example.com")
    assert r.exit_code == 1 and "already exists" in r.output and "password" not in r.output
    r = run(ready, "user", "add", "bob@example.com", "--alt", "al@example.com")
    assert r.exit_code == 1 and "alice@example.com" in r.output and "password" not in r.output
    r = run(ready, "user", "add", "bob", "--set", "alternate_addresses=al@example.com")
    assert r.exit_code == 1 and "alice@example.com" in r.output and "password" not in r.output
    for args in (("-s", "NOPE"), ("-s", "DIGEST-MD5"), ("-t", "{NOPE}x")):
        r = run(ready, "pw", *args)
        assert r.exit_code in (2, 75) and "Enter" not in r.output, (args, r.output)


def test_config_may_follow_the_subcommand(ready: Path) -> None:
    r = CliRunner().invoke(main, ["user", "list", "-c", str(ready), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert [a["uid"] for a in json.loads(r.output)] == ["alice@example.com"]
    r = CliRunner().invoke(
        main, ["--format", "tsv", "user", "show", "--config", str(ready), "al@example.com"]
    )
    assert r.exit_code == 0 and "uid\talice@example.com\n" in r.output


def test_user_list_to_a_pipe_is_tab_separated_and_never_shortened(ready: Path) -> None:
    long_uid = "firstname.middle.lastname-2026@mail.a-long-subdomain.of-an-example.example"
    r = run(ready, "user", "add", long_uid, "--no-password", "--set", "service.pop3=off")
    assert r.exit_code == 0, r.output
    # CliRunner's stdout is not a terminal: TSV, one line per account, no header.
    listed = run(ready, "user", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "alice@example.com\talice@example.com\tactive\t\t",
        f"{long_uid}\t{long_uid}\tactive\t\tpop3",
    ]
    table = run(ready, "--format", "table", "user", "list")
    assert "┃ uid" in table.output and "2 account(s)" in table.output
    assert json.loads(run(ready, "user", "list", "--format", "json").output)[1]["uid"] == long_uid


@pytest.mark.parametrize("fmt", ["tsv", "json", "table"])
def test_user_list_stops_at_its_limit_and_lists_everything_without_one(
    ready: Path, fmt: str
) -> None:
    for n in range(3):
        assert run(ready, "user", "add", f"zed{n}", "--no-password").exit_code == 0

    def uids(*args: str) -> list[str]:
        output = run(ready, "--format", fmt, "user", "list", *args).output
        if fmt == "json":
            return [a["uid"] for a in json.loads(output)]
        if fmt == "table":
            return [line.split("│")[1].strip() for line in output.splitlines() if line[:1] == "│"]
        return [line.split("\t")[0] for line in output.splitlines()]

    assert uids("zed*") == ["zed0", "zed1", "zed2"]
    assert uids("zed*", "--limit", "2") == ["zed0", "zed1"]
    assert len(uids()) == 4  # alice too: no limit by default


def test_user_list_in_a_real_pipe_streams_tsv(ready: Path) -> None:
    done = subprocess.run(
        [*MAILWARDEN, "user", "list", "-c", str(ready)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "alice@example.com\talice@example.com\tactive\t\t\n"


def test_check_config_refuses_what_serve_refuses_with_the_key(cfg: Path) -> None:
    r = run(cfg, "check-config")
    assert r.exit_code == 78 and "directory.path" in r.output and "mailwarden init" in r.output
    assert run(cfg, "init").exit_code == 0
    assert run(cfg, "check-config").exit_code == 0
    text = cfg.read_text()
    unknown_owner = '[dovecot]\nclient_socket_user = "no-such-user-mw"\n'
    cfg.write_text(text.replace("[dovecot]\n", unknown_owner))
    checked = run(cfg, "check-config")
    assert checked.exit_code == 78, checked.output
    assert f"{cfg}: dovecot.client_socket_user: no such user: 'no-such-user-mw'" in checked.output
    served = subprocess.run(
        [*MAILWARDEN, "--config", str(cfg), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 78 and "dovecot.client_socket_user" in served.stderr
    cfg.write_text(text + "workers = 2\n")  # [server] is the last table: memory guard store
    for args in (("check-config",), ("serve",)):
        r = run(cfg, *args)
        assert r.exit_code == 78 and "server.workers" in r.output, (args, r.output)


def test_check_config_refuses_a_sentinel_password_file_it_cannot_read(cfg: Path) -> None:
    assert run(cfg, "init").exit_code == 0
    sentinels = (
        '[guard]\nstore = "redis"\n[guard.redis]\nsentinels = ["127.0.0.1:1", "[::1]:1"]\n'
        'sentinel_master = "mw"\nsentinel_password_file = "sentinel.pw"\n'
    )
    cfg.write_text(cfg.read_text() + sentinels)
    r = run(cfg, "check-config")
    assert r.exit_code == 78 and "guard.redis.sentinel_password_file" in r.output, r.output
    # Readable, it passes: no Sentinel is asked (serve starts while Redis is away).
    (cfg.parent / "sentinel.pw").write_text("pw\n")
    assert run(cfg, "check-config").exit_code == 0


def test_mailgate_without_a_database_keeps_the_mail_queued(tmp_path: Path) -> None:
    # 78 would make Exim bounce the mail (with our output) to its unverified sender.
    (tmp_path / "gpg").mkdir(mode=0o700)
    cfg = tmp_path / "mg.toml"
    cfg.write_text('[directory]\npath = "absent.db"\n[mailgate]\ngnupg_home = "gpg"\n')
    r = run(cfg, "mailgate", "ping", stdin="From: a@example.com\nSubject: x\n\nhi\n")
    assert r.exit_code == 75, r.output
    assert "mailwarden init" in r.output


# --------------------------------------------------------------------------- admin, token, audit

ADMIN_PASSWORD = "a long admin password\n"


def test_administrators_are_added_listed_changed_and_removed(ready: Path) -> None:
    assert (
        run(ready, "admin", "add", "ann", "--password-stdin", stdin=ADMIN_PASSWORD).exit_code == 0
    )
    added = run(
        ready, "admin", "add", "hal", "--role", "helpdesk", "--password-stdin", stdin=ADMIN_PASSWORD
    )
    assert added.exit_code == 0, added.output
    again = run(ready, "admin", "add", "hal", "--password-stdin", stdin=ADMIN_PASSWORD)
    assert again.exit_code == 1 and "exists" in again.output
    short = run(ready, "admin", "add", "eve", "--password-stdin", stdin="short\n")
    assert short.exit_code == 1 and "12 characters" in short.output
    listed = json.loads(run(ready, "admin", "list", "--json").output)
    assert [(a["name"], a["role"], a["totp"]) for a in listed] == [
        ("ann", "admin", False),
        ("hal", "helpdesk", False),
    ]
    last = run(ready, "admin", "remove", "ann")
    assert last.exit_code == 1 and "last administrator" in last.output
    assert run(ready, "admin", "set-role", "hal", "admin").exit_code == 0
    assert run(ready, "admin", "remove", "ann").exit_code == 0
    assert run(ready, "admin", "remove", "ann").exit_code == 67
    assert run(ready, "admin", "reset-totp", "nobody").exit_code == 67


def test_a_token_is_printed_once_and_revoked_by_name(ready: Path) -> None:
    made = run(ready, "token", "add", "ci", "--scope", "read", "--expires", "30d")
    assert made.exit_code == 0, made.output
    value = made.output.strip()
    assert value.startswith("mwt_") and len(value) == 28
    listed = run(ready, "token", "list", "--json")
    rows = json.loads(listed.output)
    assert [(t["name"], t["scope"]) for t in rows] == [("ci", "read")]
    assert rows[0]["expires"] is not None and value not in listed.output
    assert run(ready, "token", "add", "x", "--scope", "root").exit_code == 2
    assert run(ready, "token", "add", "x", "--scope", "read", "--expires", "soon").exit_code == 2
    assert run(ready, "token", "revoke", "ci").exit_code == 0
    assert run(ready, "token", "revoke", "ci").exit_code == 67


def test_every_cli_change_is_in_the_audit_log_as_the_unix_user(ready: Path) -> None:
    run(ready, "user", "set", "alice@example.com", "quota_bytes=1000")
    run(ready, "user", "passwd", "alice@example.com", "--password-stdin", stdin="n3w-Secret\n")
    run(ready, "admin", "add", "ann", "--password-stdin", stdin=ADMIN_PASSWORD)
    run(ready, "token", "add", "ci", "--scope", "admin")
    r = run(ready, "audit", "--format", "json")
    assert r.exit_code == 0, r.output
    entries = json.loads(r.output)
    me = f"cli:{getpass.getuser()}"
    assert [(e["actor"], e["action"], e["target"]) for e in entries][:4] == [
        (me, "token.create", "ci"),
        (me, "admin.add", "ann"),
        (me, "account.password", "alice@example.com"),
        (me, "account.update", "alice@example.com"),
    ]
    assert {e["source"] for e in entries} == {"cli"}
    assert "n3w-Secret" not in r.output and "long admin password" not in r.output
    mine = json.loads(run(ready, "audit", "--user", "alice@example.com", "--json").output)
    assert [e["action"] for e in mine][:2] == ["account.password", "account.update"]
    assert len(json.loads(run(ready, "audit", "--limit", "1", "--json").output)) == 1
    assert json.loads(run(ready, "audit", "--actor", "cli:nobody", "--json").output) == []
    assert json.loads(run(ready, "audit", "--since", "2999-01-01", "--json").output) == []
    assert run(ready, "audit", "--since", "whenever").exit_code == 2


def test_user_reset_totp_says_when_there_was_none(ready: Path) -> None:
    r = run(ready, "user", "reset-totp", "alice@example.com")
    assert r.exit_code == 0 and "had no second factor" in r.output


def test_the_commands_are_registered() -> None:
    assert {"admin", "token", "audit"} <= set(main.commands)


def test_app_passwords_are_made_listed_used_and_revoked_from_the_command_line(
    ready: Path,
) -> None:
    r = run(
        ready,
        "user",
        "app-password",
        "add",
        "alice@example.com",
        "--name",
        "phone",
        "--services",
        "imap,smtp",
        "--expires",
        "2999-12-31",
    )
    assert r.exit_code == 0, r.output
    value = r.stdout.strip()
    assert value.startswith("mwa_") and len(value) == 28
    assert "shown only now" in r.stderr
    assert run(ready, "auth", "test", "alice@example.com", value).exit_code == 0
    assert run(ready, "auth", "test", "alice@example.com", value, "-s", "pop3").exit_code == 77
    listed = run(ready, "--format", "json", "user", "app-password", "list", "alice@example.com")
    assert listed.exit_code == 0, listed.output
    (app,) = json.loads(listed.stdout)
    assert (app["name"], app["services"]) == ("phone", ["imap", "smtp"])
    assert app["last_used"]["service"] == "imap"  # written when the command's engine drained
    assert value not in listed.output and "digest" not in app
    tsv = run(ready, "--format", "tsv", "user", "app-password", "list", "alice@example.com")
    # An expiry date is the end of that day: the first second of the next.
    assert tsv.stdout.startswith(f"{app['id']}\tphone\timap,smtp\t3000-01-01 00:00:00Z\t")

    assert run(ready, "user", "app-password", "only", "alice@example.com", "on").exit_code == 0
    assert run(ready, "auth", "test", "alice@example.com", "secret").exit_code == 77
    assert run(ready, "auth", "test", "alice@example.com", "secret", "-s", "web").exit_code == 0
    assert run(ready, "auth", "test", "alice@example.com", value).exit_code == 0

    r = run(ready, "user", "app-password", "revoke", "alice@example.com", "phone")
    assert r.exit_code == 0 and f"revoked app password {app['id']}" in r.output
    assert run(ready, "auth", "test", "alice@example.com", value).exit_code == 77
    assert (
        run(ready, "user", "app-password", "revoke", "alice@example.com", "phone").exit_code == 67
    )
    r = run(
        ready,
        "user",
        "app-password",
        "add",
        "alice@example.com",
        "--name",
        "x",
        "--services",
        "web",
    )
    assert r.exit_code == 1 and "web page" in r.output
