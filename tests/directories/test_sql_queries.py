"""Dovecot-style queries as templates with bound parameters (directories/sql/queries.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.directories.sql import MARIADB, POSTGRESQL, Param, Sql
from mailwarden.directories.sql.queries import (
    UPDATE_VARIABLES,
    Expand,
    Var,
    parse_query,
    variables_for,
)
from mailwarden.errors import InvalidValue

PFA = "SELECT username AS user,password FROM mailbox WHERE username = '%u' AND active='1'"


def bind(text: str, **values: str) -> Sql:
    return parse_query(text, key="k").bind(values)


def test_a_quoted_variable_becomes_one_parameter_and_its_quotes_go() -> None:
    sql = bind(PFA, user="o'brien@example.org")
    assert sql.parts == (
        "SELECT username AS user,password FROM mailbox WHERE username = ",
        Param("o'brien@example.org"),
        " AND active='1'",
    )
    assert POSTGRESQL.render(sql) == (
        "SELECT username AS user,password FROM mailbox WHERE username = $1 AND active='1'",
        ("o'brien@example.org",),
    )


def test_mariadb_placeholders_and_literal_percent_signs() -> None:
    sql = bind("SELECT a FROM t WHERE b LIKE 'x%%' AND u = '%u'", user="100%")
    assert MARIADB.render(sql) == ("SELECT a FROM t WHERE b LIKE 'x%%' AND u = %s", ("100%",))
    assert POSTGRESQL.render(sql) == ("SELECT a FROM t WHERE b LIKE 'x%' AND u = $1", ("100%",))


def test_a_literal_with_text_and_variables_is_expanded_into_one_value() -> None:
    sql = bind("SELECT 1 FROM t WHERE u = '%n@%d' AND x = 'it''s'", **variables_for("a@b.c"))
    assert sql.parts == ("SELECT 1 FROM t WHERE u = ", Param("a@b.c"), " AND x = 'it''s'")
    sql = bind("SELECT 1 WHERE a = 'it''s %u'", user="x")
    assert sql.parts[1] == Param("it's x")


def test_long_names_short_names_and_modifiers() -> None:
    template = parse_query(
        "SELECT 1 WHERE a='%{user}' AND b='%Ln' AND c='%U{domain}' AND d='%s' AND e='%r' "
        "AND f='%{lip}' AND g='%{domain_last}'",
        key="k",
    )
    values = variables_for("Al.Ice@Example.ORG", service="imap", rip="192.0.2.1", lip="::1")
    params = [p.value for p in template.bind(values).parts if isinstance(p, Param)]
    assert params == [
        "Al.Ice@Example.ORG",
        "al.ice",
        "EXAMPLE.ORG",
        "imap",
        "192.0.2.1",
        "::1",
        "Example.ORG",
    ]
    assert template.variables == {"user", "username", "domain", "service", "rip", "lip"} | {
        "domain_last"
    }


def test_an_unquoted_variable_is_a_parameter_too() -> None:
    assert bind("SELECT 1 WHERE id = %u", user="7").parts == ("SELECT 1 WHERE id = ", Param("7"))


def test_no_at_sign_means_an_empty_domain() -> None:
    assert variables_for("bob")["domain"] == ""
    assert variables_for("bob")["username"] == "bob"
    assert variables_for("a@b@c")["domain"] == "b@c"
    assert variables_for("a@b@c")["domain_first"] == "b"
    assert variables_for("a@b@c")["domain_last"] == "c"


def test_double_quoted_strings_and_mariadb_backslash_escapes() -> None:
    assert bind('SELECT 1 WHERE u = "%u"', user="x").parts[1] == Param("x")
    template = parse_query(r"SELECT 1 WHERE u = 'a\'b%u'", key="k", backslash_escapes=True)
    assert template.bind({"user": "x"}).parts[1] == Param("a'bx")


def test_comments_are_passed_on_unexpanded() -> None:
    sql = bind("SELECT 1 -- it's '%u'\nWHERE u = '%u' /* '%n' */", user="x")
    assert sql.parts == ("SELECT 1 -- it's '%u'\nWHERE u = ", Param("x"), " /* '%n' */")


def test_a_trailing_semicolon_is_dropped() -> None:
    assert bind("SELECT 1 WHERE u = '%u';  ", user="x").parts == (
        "SELECT 1 WHERE u = ",
        Param("x"),
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("SELECT 1 WHERE u = '%x'", "known variable"),
        ("SELECT 1 WHERE u = '%{nope}'", "known variable"),
        ("SELECT 1 WHERE u = '%w'", "known variable"),
        ("SELECT 1 WHERE u = '%Eu'", "modifier"),
        ("SELECT 1 WHERE u = '%Mu'", "modifier"),
        ("SELECT 1 WHERE u = '%1.2u'", "offset or width"),
        ("SELECT 1 WHERE u = '%u", "closed"),
        ("SELECT 1; DROP TABLE t", "one SQL statement"),
        ("SELECT 1 /* open", "closed"),
        ("SELECT 1 WHERE u = '%{user'", "closing"),
        ("SELECT 1 WHERE u = %", "final"),
        ("   ", "an SQL query"),
    ],
)
def test_what_cannot_be_a_template_is_refused_at_load(text: str, why: str) -> None:
    with pytest.raises(InvalidValue, match=why) as info:
        parse_query(text, key="sql.password_query")
    assert info.value.key == "sql.password_query"


def test_the_update_query_may_use_the_new_password() -> None:
    template = parse_query(
        "UPDATE mailbox SET password = '%w' WHERE username = '%u'",
        key="k",
        allowed=UPDATE_VARIABLES,
    )
    parts = template.bind({"user": "a", "password": "{X}y"}).parts
    assert [p.value for p in parts if isinstance(p, Param)] == ["{X}y", "a"]


# ------------------------------------------------------------------------ properties


@given(st.text(max_size=200), st.booleans())
def test_any_text_parses_or_is_refused_with_invalidvalue(text: str, backslash: bool) -> None:
    try:
        template = parse_query(text, key="k", backslash_escapes=backslash)
    except InvalidValue:
        return
    sql = template.bind(variables_for("user@example.org", service="imap"))
    for dialect in (POSTGRESQL, MARIADB):
        dialect.render(sql)


_plain = st.text(
    alphabet=st.characters(blacklist_characters="'\"%;-/\\\x00", blacklist_categories=["Cs"]),
    max_size=20,
)
_names = st.sampled_from(["u", "n", "d", "{user}", "{username}", "{domain}", "s", "{service}"])
_value = st.text(max_size=30).filter(lambda v: "\x00" not in v)


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Queries whose variables all sit inside '...' literals, with text around them."""
    pieces = ["SELECT x FROM t WHERE "]
    for _ in range(draw(st.integers(1, 4))):
        pieces.append(draw(_plain).replace("'", ""))
        inner = [draw(_plain)]
        for _ in range(draw(st.integers(1, 3))):
            inner.append("%" + draw(_names))
            inner.append(draw(_plain))
        pieces.append("'" + "".join(inner) + "'")
    return "".join(pieces)


def dovecot_expand(text: str, values: dict[str, str]) -> str:
    """What Dovecot sends for ``text``: each value SQL-escaped ('' for ') in place."""
    template = parse_query(text, key="k")
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            assert isinstance(part, Expand)
            body = "".join(
                (p if isinstance(p, str) else p.value(values)).replace("'", "''")
                for p in part.pieces
            )
            out.append("'" + body + "'")
    return "".join(out)


def inline(sql: Sql) -> str:
    """Our bound query with each parameter written back as an escaped literal."""
    return "".join(
        p if isinstance(p, str) else "'" + str(p.value).replace("'", "''") + "'" for p in sql.parts
    )


@given(templates(), _value, _value)
def test_binding_means_what_dovecots_escaped_expansion_means(
    text: str, user: str, service: str
) -> None:
    """The bound query, parameters written back as escaped literals, is exactly the
    query Dovecot would send: the same rows are selected, whatever the values hold."""
    values = variables_for(user, service=service)
    template = parse_query(text, key="k")
    sql = template.bind(values)
    assert inline(sql) == dovecot_expand(text, values)
    # And no value ever reaches the query text: each one is an argument.
    rendered, args = POSTGRESQL.render(sql)
    assert len(args) == sum(1 for p in template.parts if not isinstance(p, str))
    assert rendered.count("$") >= len(args)


def test_var_modifiers_apply_in_order() -> None:
    assert Var("user", "LT").value({"user": "  AB "}) == "ab"
