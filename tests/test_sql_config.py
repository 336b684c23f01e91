"""The ``[sql]`` section, its checks, and ``mailwarden import dovecot-sql-conf``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mailwarden import config, confignames
from mailwarden.cli import main
from mailwarden.directories.sql.dovecotconf import (
    KNOWN_KEYS,
    convert,
    parse_connect,
    read_settings,
)
from mailwarden.errors import ConfigError, InvalidValue

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "postfixadmin"


def test_the_defaults_are_dovecots_queries() -> None:
    sql = config.loads("").sql
    assert sql.mode == "own"
    assert sql.password_query.startswith("SELECT username, domain, password FROM users")
    assert sql.default_pass_scheme == "MD5"
    assert sql.update_query == ""


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('hosts = ["db one"]', "sql.hosts[0]"),
        ('hosts = ["db:99999"]', "sql.hosts[0]"),
        ("hosts = []", "sql.hosts"),
        ('replicas = ["[::1"]', "sql.replicas[0]"),
        ('read_from = "replicas"', "sql.read_from"),
        ('password = "x"\npassword_file = "f"', "sql.password_file"),
        ("pool_size = 0", "sql.pool_size"),
        ("pool_size = 1", "sql.pool_size"),
        ("timeout = 0", "sql.timeout"),
        ('driver = "oracle"', "sql.driver"),
        ('mode = "mixed"', "sql.mode"),
        ('password_query = " "', "sql.password_query"),
    ],
)
def test_bad_values_are_refused_naming_the_key(toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.loads(f"[sql]\n{toml}\n")
    assert info.value.key == key


def test_good_host_forms_load() -> None:
    sql = config.loads(
        '[sql]\nhosts = ["db1", "db2:5433", "[2001:db8::1]:5432", "/run/postgresql", "::1"]\n'
        'replicas = ["10.0.0.2"]\nread_from = "replicas"\n'
    ).sql
    assert len(sql.hosts) == 5


def test_a_query_that_cannot_be_a_template_is_a_config_error_with_the_sql_backend() -> None:
    text = '[directory]\nbackend = "sql"\n[sql]\nmode = "dovecot"\n'
    bad = text + "password_query = \"SELECT password FROM t WHERE u = '%Z'\"\n"
    with pytest.raises(ConfigError) as info:
        confignames.check(config.loads(bad, source="x.toml"))
    assert info.value.key == "sql.password_query"
    assert "x.toml" in str(info.value)
    # Not checked when the SQL directory is not the one used.
    confignames.check(config.loads(bad.replace('backend = "sql"', 'backend = "sqlite"')))
    with pytest.raises(ConfigError, match="update_query"):
        confignames.check(config.loads(text + "update_query = \"UPDATE t SET p = '%x'\"\n"))


# ------------------------------------------------------------- dovecot-sql.conf.ext


def test_postfixadmins_dovecot_sql_conf_becomes_a_loadable_sql_section() -> None:
    converted = convert((EXAMPLE / "dovecot-sql.conf.ext").read_text())
    loaded = confignames.check(config.loads(converted.toml))
    assert loaded.directory.backend == "sql"
    sql = loaded.sql
    assert (sql.mode, sql.driver, sql.hosts, sql.database) == (
        "dovecot",
        "postgresql",
        ("localhost",),
        "postfix",
    )
    assert (sql.user, sql.password, sql.default_pass_scheme) == (
        "postfix",
        "postfix",
        "SHA512-CRYPT",
    )
    assert sql.password_query == (
        "SELECT username AS user,password FROM mailbox WHERE username = '%u' AND active='1'"
    )
    assert sql.update_query == ""
    assert converted.warnings == ()


def test_continuation_lines_quotes_several_hosts_and_unknown_options() -> None:
    text = (
        "# comment\n"
        "driver = mysql\n"
        "connect = host=db1 host=/run/mysqld/mysqld.sock dbname=mail user=u "
        "password='p\\'w d' port=3307 ssl_ca=/etc/ca.pem\n"
        "password_query = SELECT password \\\n"
        "    FROM users WHERE userid = '%u'\n"
        "update_query = \"UPDATE users SET password = '%w' WHERE userid = '%u'\"\n"
    )
    converted = convert(text)
    sql = confignames.check(config.loads(converted.toml)).sql
    assert sql.driver == "mariadb"
    assert sql.hosts == ("db1", "/run/mysqld/mysqld.sock")
    assert (sql.port, sql.password) == (3307, "p'w d")
    assert sql.password_query == "SELECT password FROM users WHERE userid = '%u'"
    assert sql.update_query == "UPDATE users SET password = '%w' WHERE userid = '%u'"
    assert sql.default_pass_scheme == "MD5"  # Dovecot's default
    assert sql.user_query.startswith("SELECT home, uid, gid FROM users")
    assert converted.warnings == (
        "connect option ssl_ca is not carried over (no [sql] key for it)",
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("driver = pgsql\n", "connect"),
        ("connect = host=x\n", "driver"),
        ("driver = sqlite\nconnect = /var/db.sqlite\n", "pgsql or mysql"),
        ("driver = pgsql\nconnect = host=x\nnonsense = 1\n", "known setting"),
        ("driver = pgsql\nconnect = host=x port=none\n", "TCP port"),
        ("driver = pgsql\nconnect = host=x password='open\n", "closing quote"),
        ("!include other.conf\n", "include"),
        ("just words\n", "key = value"),
    ],
)
def test_what_dovecot_would_refuse_is_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidValue, match=why):
        convert(text)


def test_read_settings_and_connect_pieces() -> None:
    assert read_settings('a_key = "x"\n'.replace("a_key", "driver")) == {"driver": "x"}
    assert parse_connect("host=a  host=b").hosts == ["a", "b"]


def test_the_command_writes_stdout_or_a_new_file(tmp_path: Path) -> None:
    runner = CliRunner()
    conf = EXAMPLE / "dovecot-sql.conf.ext"
    r = runner.invoke(main, ["import", "dovecot-sql-conf", str(conf)])
    assert r.exit_code == 0, r.output
    assert 'mode = "dovecot"' in r.output
    out = tmp_path / "sql.toml"
    r = runner.invoke(main, ["import", "dovecot-sql-conf", str(conf), "--output", str(out)])
    assert r.exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert config.load(out).sql.mode == "dovecot"
    r = runner.invoke(main, ["import", "dovecot-sql-conf", str(conf), "--output", str(out)])
    assert r.exit_code == 65  # never overwrites
    bad = tmp_path / "bad.conf"
    bad.write_text("driver = oracle\nconnect = x\n")
    r = runner.invoke(main, ["import", "dovecot-sql-conf", str(bad)])
    assert r.exit_code == 65


def test_check_config_refuses_an_unreadable_password_file_but_not_a_server_down(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "mailwarden.toml"
    cfg.write_text(
        '[directory]\nbackend = "sql"\n[server]\ncontrol_socket = ""\n'
        '[sql]\nmode = "dovecot"\nhosts = ["127.0.0.1:1"]\npassword_file = "missing"\n'
    )
    r = CliRunner().invoke(main, ["--config", str(cfg), "check-config"])
    assert r.exit_code == 78, r.output
    assert "sql.password_file" in r.output
    (tmp_path / "missing").write_text("secret\n")
    r = CliRunner().invoke(main, ["--config", str(cfg), "check-config"])
    assert r.exit_code == 0, r.output


_value = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40).map(
    str.strip
)


@st.composite
def sql_conf_files(draw: st.DrawFn) -> str:
    lines = [f"driver = {draw(st.sampled_from(['pgsql', 'mysql', 'sqlite', 'x']))}"]
    lines.append(f"connect = {draw(_value)}")
    for key in draw(st.lists(st.sampled_from(sorted(KNOWN_KEYS)), max_size=4)):
        lines.append(f"{key} = {draw(_value)}")
    return "\n".join(lines) + "\n"


@given(st.one_of(st.text(max_size=300), sql_conf_files()))
def test_any_file_converts_to_valid_toml_or_is_refused_with_invalidvalue(text: str) -> None:
    try:
        converted = convert(text)
    except InvalidValue:
        return
    tomllib.loads(converted.toml)  # the text is TOML, whatever the values held


def test_the_command_refuses_a_result_that_would_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "dovecot-sql.conf.ext"
    bad.write_text("driver = pgsql\nconnect = host=a/b\npassword_query = SELECT '%Q'\n")
    r = CliRunner().invoke(main, ["import", "dovecot-sql-conf", str(bad)])
    assert r.exit_code == 65
    assert "sql.hosts[0]" in r.output
