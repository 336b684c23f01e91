"""Config overrides (``-o key=value``, ``MAILWARDEN_*``) and config errors that name
the line and suggest the closest key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mailwarden import config, confignames
from mailwarden.cli import main
from mailwarden.config.locate import line_of
from mailwarden.config.overrides import from_environ, parse_value
from mailwarden.errors import ConfigError

# --------------------------------------------------------------------------- values


@given(st.text())
def test_any_text_is_a_toml_value_or_itself(text: str) -> None:
    value = parse_value(text)
    if isinstance(value, str) and value == text:
        return
    # Not the text itself: then exactly one TOML value was written.
    assert "\n" not in text and "\r" not in text
    assert repr(tomllib.loads(f"v = {text}")) == repr({"v": value})  # nan too


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_are_integers(n: int) -> None:
    assert parse_value(str(n)) == n


@given(st.lists(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]))))
def test_arrays_of_quoted_strings_are_arrays(items: list[str]) -> None:
    text = "[" + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
    assert parse_value(text + "]") == items


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("2.5", 2.5),
        ('"a b"', "a b"),
        ("debug", "debug"),
        ("/run/secrets/sql", "/run/secrets/sql"),
        ("1\nx = 2", "1\nx = 2"),
        ("1 \n[t]", "1 \n[t]"),
        ("{name = 'x'}", {"name": "x"}),
        ("", ""),
    ],
)
def test_a_value_is_toml_when_it_is_one_value_else_text(text: str, value: object) -> None:
    assert parse_value(text) == value


# --------------------------------------------------------------------------- loading

FILE = '[guard]\nban_time = 100\n[log]\nlevel = "info"\n'


def test_precedence_is_file_then_environment_then_option(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text(FILE)
    env = {"MAILWARDEN_GUARD__BAN_TIME": "200", "MAILWARDEN_LOG__LEVEL": "debug"}
    assert config.load(path, environ={}).guard.ban_time == 100
    both = config.load(path, environ=env)
    assert (both.guard.ban_time, both.log.level) == (200, "debug")
    cfg = config.load(path, environ=env, overrides=["guard.ban_time=300"])
    assert (cfg.guard.ban_time, cfg.log.level) == (300, "debug")
    assert cfg.overrides == ("guard.ban_time=300",)  # kept for a reload
    later = config.load(path, environ={}, overrides=["guard.ban_time=1", "guard.ban_time=2"])
    assert later.guard.ban_time == 2


def test_nested_tables_and_new_tables_can_be_overridden() -> None:
    cfg = config.loads(
        "",
        environ={"MAILWARDEN_GUARD__REDIS__KEY_PREFIX": "site:"},
        overrides=["sql.hosts=['db1', 'db2']", "guard.redis.timeout=2"],
    )
    assert cfg.guard.redis.key_prefix == "site:"
    assert cfg.guard.redis.timeout == 2.0
    assert cfg.sql.hosts == ("db1", "db2")


def test_a_string_key_takes_the_text_even_when_it_looks_like_a_number() -> None:
    cfg = config.loads(
        "",
        environ={"MAILWARDEN_SQL__PASSWORD": "123456"},
        overrides=["ldap.bind_password=true", 'auth.default_realm="example.com"'],
    )
    assert cfg.sql.password == "123456"
    assert cfg.ldap.bind_password == "true"
    assert cfg.auth.default_realm == "example.com"  # a quoted TOML string is unquoted


NAME = st.from_regex(r"[a-z][a-z0-9]{0,8}(_[a-z0-9]{1,8}){0,3}", fullmatch=True)


@given(st.lists(NAME, min_size=2, max_size=4), st.text())
def test_every_key_path_has_exactly_one_variable(path: list[str], value: str) -> None:
    """Single underscores stay inside a name, double ones separate the names: the
    mapping from a dotted key to its variable and back is one-to-one."""
    name = "MAILWARDEN_" + "__".join(part.upper() for part in path)
    (found,) = from_environ({name: value})
    assert (found.path, found.text) == (tuple(path), value)


def test_variables_without_a_double_underscore_are_not_overrides() -> None:
    assert from_environ({"MAILWARDEN_CONFIG": "/x", "MAILWARDEN_DOVEADM_SEED": "1"}) == []
    (found,) = from_environ({"MAILWARDEN_GUARD__REDIS__PASSWORD_FILE": "p", "OTHER__X": "1"})
    assert found.path == ("guard", "redis", "password_file")
    assert found.origin == "$MAILWARDEN_GUARD__REDIS__PASSWORD_FILE"


@pytest.mark.parametrize(
    ("overrides", "environ", "message"),
    [
        (["guard.ban_tim=5"], {}, "-o guard.ban_tim: guard.ban_tim: expected one of the keys"),
        (["guard.ban_time=-1"], {}, "-o guard.ban_time: guard.ban_time: expected seconds > 0"),
        ([], {"MAILWARDEN_GUARD__BAN_TIME": "x"}, "$MAILWARDEN_GUARD__BAN_TIME: guard.ban_time"),
        (["gaurd.ban_time=1"], {}, "-o gaurd.ban_time: gaurd: expected one of the keys"),
        (["guard"], {}, "-o guard: expected section.key=value"),
        (["guard..x=1"], {}, "expected section.key=value"),
        (["directory.path.x=1"], {}, "-o directory.path.x: directory.path is not a table"),
        ([], {"MAILWARDEN___X": "1"}, "expected MAILWARDEN_SECTION__KEY"),
    ],
)
def test_an_error_about_an_override_names_it(
    overrides: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config.loads(
            '[guard]\nban_time = 100\n[directory]\npath = "x"\n',
            source="mw.toml",
            overrides=overrides,
            environ=environ,
        )
    assert message in str(info.value)


def test_an_unknown_override_key_gets_the_closest_name() -> None:
    with pytest.raises(ConfigError, match='did you mean "ban_time"'):
        config.loads("", overrides=["guard.ban_tme=5"])
    with pytest.raises(ConfigError, match='did you mean "guard"'):
        config.loads("", overrides=["gaurd.ban_time=5"])


def test_o_on_the_command_line_before_and_after_the_command(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text('[directory]\npath = "mw.db"\n')
    runner = CliRunner()
    r = runner.invoke(main, ["-c", str(path), "-o", "guard.ban_time=0", "check-config"])
    assert r.exit_code == 78 and "-o guard.ban_time: guard.ban_time: expected seconds > 0" in (
        r.output
    ), r.output
    r = runner.invoke(main, ["check-config", "-c", str(path), "-o", "log.level=loud"])
    assert r.exit_code == 78 and "-o log.level: log.level" in r.output, r.output
    r = runner.invoke(
        main,
        ["check-config", "-c", str(path), "-o", "log.level=loud"],
        env={"MAILWARDEN_LOG__LEVEL": "debug"},
    )
    assert r.exit_code == 78 and "-o log.level" in r.output, r.output
    r = runner.invoke(main, ["check-config", "-c", str(path)], env={"MAILWARDEN_LOG__LEVEL": "x"})
    assert r.exit_code == 78 and "$MAILWARDEN_LOG__LEVEL: log.level" in r.output, r.output


def test_import_dovecot_sql_conf_keeps_its_own_o_for_the_output(tmp_path: Path) -> None:
    conf = tmp_path / "dovecot-sql.conf.ext"
    conf.write_text("driver = pgsql\nconnect = host=db dbname=mail user=mail\n")
    out = tmp_path / "out.toml"
    r = CliRunner().invoke(main, ["import", "dovecot-sql-conf", str(conf), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "[sql]" in out.read_text()


# --------------------------------------------------------------------------- errors


def test_an_unknown_key_names_the_line_and_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text('# a comment\n[log]\nlevel = "info"\n\n[directory]\n  paht = "x"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}:6: directory.paht: expected one of the keys"), message
    assert 'did you mean "path"?' in message


def test_an_unknown_section_names_its_header_line() -> None:
    with pytest.raises(ConfigError) as info:
        config.loads("[log]\nlevel = 'info'\n[gaurd]\nban_time = 1\n", source="mw.toml")
    assert str(info.value).startswith("mw.toml:3: gaurd: expected one of the keys")
    assert 'did you mean "guard"?' in str(info.value)


def test_a_far_fetched_name_gets_no_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        config.loads("[directory]\nzzzzzz = 1\n", source="mw.toml")
    assert "did you mean" not in str(info.value)


def test_a_refused_value_names_its_line_and_a_registry_check_too(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text("[directory]\nreaders = 0\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:2: directory.readers: "):
        config.load(path, environ={})
    path.write_text('[log]\nlevel = "info"\n[passwords]\n\nscheme = "ROT13"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:5: passwords.scheme: "):
        confignames.load(path)


TEXT = """\
[directory]
path = "x"
[guard]
ban_time = 10
redis.timeout = 2
rules = [
  {name = "a", period = 60, threshold = 5},
]
[guard.redis]
url = "redis://x"
[[mailgate.x]]
a = 1
[[mailgate.x]]
"b.c" = 2
[http]
attributes = { quota = "shoe" }
"""


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("directory", 1),
        ("directory.path", 2),
        ("directory.readers", 1),  # not written: its table
        ("guard.ban_time", 4),
        ("guard.redis.timeout", 5),  # a dotted key
        ("guard.rules", 6),
        ("guard.rules[0].period", 6),  # inside an inline table: the array's line
        ("guard.redis.url", 10),
        ("guard.redis.sentinels", 9),
        ("mailgate.x[0].a", 12),
        ("mailgate.x[1]", 13),
        ("mailgate.x[1].b.c", 13),  # a quoted key with a dot: ambiguous, its table
        ("http.attributes.quota", 16),
        ("nosuch", None),
    ],
)
def test_line_of_finds_headers_keys_dotted_keys_and_inline_tables(
    key: str, line: int | None
) -> None:
    assert line_of(TEXT, key) == line
