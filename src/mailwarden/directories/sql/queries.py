"""Dovecot-style SQL queries (``password_query = ... WHERE username = '%u'``) parsed once
into templates whose ``%`` variables become **bound parameters**.

Pure: no I/O, no driver. Dovecot 2.3 expands a query as a string: each variable's
value is SQL-escaped and pasted in, inside the quotes the administrator wrote. Here
the same query text is read once, at config load, into a :class:`QueryTemplate`;
at lookup time :meth:`QueryTemplate.bind` gives an :class:`~.dialect.Sql` in which
every value is a :class:`~.dialect.Param`, so a username holding quotes,
backslashes or ``%`` is data and never SQL.

The quoting rule. A string literal that contains variables (``'%u'``,
``'%n@%d'``, ``"%u"``) becomes *one* parameter, whose value is the literal's text
with the variables expanded: the quotes disappear, and the literal's other
characters stay (``''`` read as one ``'``, and on MariaDB the backslash escapes).
A literal without variables, and all text outside literals, is passed on as
written (``%%`` becomes ``%``, as Dovecot does). A variable outside any literal
becomes a parameter too; it is bound as text, so quote it as Dovecot's
documentation does. Comments (``-- ...`` and ``/* ... */``) are passed on
untouched, variables in them unexpanded.

Variables (Dovecot's names; short and long forms): ``%u`` ``%{user}``, ``%n``
``%{username}``, ``%d`` ``%{domain}``, ``%s`` ``%{service}``, ``%r`` ``%{rip}``
``%{remote_ip}``, ``%l`` ``%{lip}`` ``%{local_ip}``, ``%{rport}``/``%b``,
``%{lport}``/``%a``, ``%{domain_first}``, ``%{domain_last}``, and ``%w``
``%{password}`` in ``update_query`` only (the new stored value: mailwarden never
hands a client's plaintext to the database). Modifiers between ``%`` and the name:
``L`` (lower case), ``U`` (upper case), ``T`` (trim). Anything else (an unknown
variable, another modifier, an offset/width, a second statement after ``;``) is
refused at load with :class:`~mailwarden.errors.InvalidValue` naming the key:
Dovecot would fail every lookup at run time instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailwarden.config import SqlConfig
from mailwarden.directories.sql.dialect import Param, Sql
from mailwarden.errors import InvalidValue

#: Short names and aliases -> the canonical long name.
ALIASES: Mapping[str, str] = {
    "u": "user",
    "user": "user",
    "n": "username",
    "username": "username",
    "d": "domain",
    "domain": "domain",
    "s": "service",
    "service": "service",
    "r": "rip",
    "rip": "rip",
    "remote_ip": "rip",
    "l": "lip",
    "lip": "lip",
    "local_ip": "lip",
    "b": "rport",
    "rport": "rport",
    "remote_port": "rport",
    "a": "lport",
    "lport": "lport",
    "local_port": "lport",
    "domain_first": "domain_first",
    "domain_last": "domain_last",
    "w": "password",
    "password": "password",
}
#: Variables every query may use (``password`` only where the caller allows it).
LOOKUP_VARIABLES = frozenset(set(ALIASES.values()) - {"password"})
UPDATE_VARIABLES = frozenset(ALIASES.values())
MODIFIERS = frozenset("LUT")


@dataclass(frozen=True, slots=True)
class Var:
    """One ``%`` variable: its canonical name and modifiers, in order."""

    name: str
    modifiers: str = ""

    def value(self, values: Mapping[str, str]) -> str:
        text = values.get(self.name, "")
        for m in self.modifiers:
            if m == "L":
                text = text.lower()
            elif m == "U":
                text = text.upper()
            else:  # "T"
                text = text.strip()
        return text


@dataclass(frozen=True, slots=True)
class Expand:
    """A string literal that held variables: one parameter, made of text and variables."""

    pieces: tuple[str | Var, ...]

    def value(self, values: Mapping[str, str]) -> str:
        return "".join(p if isinstance(p, str) else p.value(values) for p in self.pieces)


@dataclass(frozen=True, slots=True)
class QueryTemplate:
    """A parsed query: SQL text, and the values to bind in order (module docstring)."""

    source: str
    parts: tuple[str | Var | Expand, ...]
    variables: frozenset[str]

    def bind(self, values: Mapping[str, str]) -> Sql:
        """The query with ``values`` (canonical name -> text) as bound parameters;
        a variable without a value is the empty string, as in Dovecot."""
        out: list[str | Param] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else Param(part.value(values)))
        return Sql(tuple(out))


def variables_for(login: str, **context: str) -> dict[str, str]:
    """The lookup variables for ``login`` (``%u``, ``%n``, ``%d``, ``%{domain_first}``,
    ``%{domain_last}``) plus ``context`` (``service``, ``rip``, ``lip``, ...)."""
    username, at, domain = login.partition("@")
    return {
        "user": login,
        "username": username,
        "domain": domain if at else "",
        "domain_first": domain.split("@", 1)[0] if at else "",
        "domain_last": login.rsplit("@", 1)[1] if at else "",
        **context,
    }


def parse_query(
    text: str,
    *,
    key: str,
    allowed: frozenset[str] = LOOKUP_VARIABLES,
    backslash_escapes: bool = False,
) -> QueryTemplate:
    """``text`` as a template; InvalidValue(key, ...) when it cannot be one.

    ``backslash_escapes``: string literals use ``\\`` escapes (MariaDB/MySQL's
    default), besides the standard ``''``.
    """
    return _Parser(text, key, allowed, backslash_escapes).parse()


class _Parser:
    def __init__(self, text: str, key: str, allowed: frozenset[str], backslash: bool) -> None:
        self.text = text
        self.key = key
        self.allowed = allowed
        self.backslash = backslash
        self.pos = 0
        self.parts: list[str | Var | Expand] = []
        self.names: set[str] = set()
        self.pending: list[str] = []  # plain text not yet appended to parts

    def fail(self, expected: str) -> InvalidValue:
        return InvalidValue(self.key, expected)

    def parse(self) -> QueryTemplate:
        text = self.text
        if "\x00" in text:
            raise self.fail("a query without NUL characters")
        n = len(text)
        while self.pos < n:
            c = text[self.pos]
            if c in "'\"":
                self.literal(c)
            elif text.startswith("--", self.pos):
                end = text.find("\n", self.pos)
                end = n if end < 0 else end
                self.pending.append(text[self.pos : end])
                self.pos = end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("a query whose /* comment is closed")
                self.pending.append(text[self.pos : end + 2])
                self.pos = end + 2
            elif c == ";":
                if text[self.pos + 1 :].strip():
                    raise self.fail("one SQL statement (nothing after ';')")
                self.pos = n  # a trailing ';' is dropped: drivers take one statement
            elif c == "%":
                item = self.variable()
                if isinstance(item, str):
                    self.pending.append(item)
                else:
                    self.flush()
                    self.parts.append(item)
            else:
                self.pending.append(c)
                self.pos += 1
        self.flush()
        if not any(isinstance(p, str) and p.strip() for p in self.parts):
            raise self.fail("an SQL query")
        return QueryTemplate(self.text, tuple(self.parts), frozenset(self.names))

    def flush(self) -> None:
        if self.pending:
            joined = "".join(self.pending)
            self.pending = []
            if self.parts and isinstance(self.parts[-1], str):
                self.parts[-1] += joined
            else:
                self.parts.append(joined)

    def literal(self, quote: str) -> None:
        """A string literal from ``self.pos`` (on its opening quote)."""
        text = self.text
        start = self.pos
        self.pos += 1
        pieces: list[str | Var] = []  # the literal's value, variables kept apart
        raw: list[str] = [quote]  # the literal as written, with %% made %
        has_var = False
        while True:
            if self.pos >= len(text):
                raise self.fail(f"a query whose string starting at {start} is closed")
            c = text[self.pos]
            if c == quote:
                if text.startswith(quote * 2, self.pos):  # '' inside '...'
                    pieces.append(quote)
                    raw.append(quote * 2)
                    self.pos += 2
                    continue
                raw.append(quote)
                self.pos += 1
                break
            if c == "\\" and self.backslash and self.pos + 1 < len(text):
                pieces.append(_unescape(text[self.pos + 1]))
                raw.append(text[self.pos : self.pos + 2])
                self.pos += 2
                continue
            if c == "%":
                item = self.variable()
                if isinstance(item, str):
                    pieces.append(item)
                    raw.append(item)
                else:
                    has_var = True
                    pieces.append(item)
                continue
            pieces.append(c)
            raw.append(c)
            self.pos += 1
        if not has_var:
            self.pending.append("".join(raw))
            return
        self.flush()
        merged: list[str | Var] = []
        for p in pieces:
            if isinstance(p, str) and merged and isinstance(merged[-1], str):
                merged[-1] += p
            else:
                merged.append(p)
        self.parts.append(Expand(tuple(merged)))

    def variable(self) -> str | Var:
        """A ``%`` sequence from ``self.pos``: ``"%"`` for ``%%``, else a Var."""
        text = self.text
        start = self.pos
        self.pos += 1
        if self.pos >= len(text):
            raise self.fail("a variable after the final '%' (write %% for a percent sign)")
        if text[self.pos] == "%":
            self.pos += 1
            return "%"
        modifiers = ""
        while self.pos < len(text) and text[self.pos] in MODIFIERS and self._more_after():
            modifiers += text[self.pos]
            self.pos += 1
        if self.pos >= len(text):
            raise self.fail("a variable name after '%'")
        c = text[self.pos]
        if c == "{":
            end = text.find("}", self.pos)
            if end < 0:
                raise self.fail("a closing '}' after '%{'")
            name = text[self.pos + 1 : end]
            self.pos = end + 1
        elif c.isdigit() or c in "-.":
            raise self.fail(f"a variable without offset or width (at {start})")
        else:
            name = c
            self.pos += 1
            if c.isupper() or (c.isalpha() and c not in ALIASES):
                raise self.fail(
                    f"a known variable or modifier: %{modifiers}{c} is not one "
                    f"(modifiers supported: {', '.join(sorted(MODIFIERS))})"
                )
        canonical = ALIASES.get(name)
        if canonical is None or canonical not in self.allowed:
            known = sorted(k for k, v in ALIASES.items() if v in self.allowed and len(k) > 1)
            raise self.fail(
                f"a known variable: %{{{name}}} is not one here (known: {', '.join(known)})"
            )
        self.names.add(canonical)
        return Var(canonical, modifiers)

    def _more_after(self) -> bool:
        """Whether the modifier letter at ``pos`` is followed by more of the variable
        (so ``%L`` alone, or ``%Lu``'s ``u``, is not mistaken for a modifier)."""
        nxt = self.pos + 1
        return nxt < len(self.text) and (self.text[nxt].isalpha() or self.text[nxt] == "{")


_BACKSLASH = {"0": "\x00", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "Z": "\x1a"}


def _unescape(c: str) -> str:
    """MySQL's backslash escape ``\\c`` inside a string literal."""
    return _BACKSLASH.get(c, c)


class DovecotQueries:
    """The four queries of ``[sql]``, parsed (:func:`parse_queries`)."""

    def __init__(
        self,
        password: QueryTemplate,
        user: QueryTemplate | None,
        iterate: QueryTemplate,
        update: QueryTemplate | None,
    ) -> None:
        self.password = password
        self.user = user
        self.iterate = iterate
        self.update = update


def parse_queries(config: SqlConfig) -> DovecotQueries:
    """``config``'s queries as templates; InvalidValue naming the key if one cannot be."""
    backslash = config.driver == "mariadb"

    def parse(name: str, text: str, allowed: frozenset[str] | None = None) -> QueryTemplate:
        if allowed is None:
            return parse_query(text, key=f"sql.{name}", backslash_escapes=backslash)
        return parse_query(text, key=f"sql.{name}", allowed=allowed, backslash_escapes=backslash)

    return DovecotQueries(
        password=parse("password_query", config.password_query),
        user=parse("user_query", config.user_query) if config.user_query.strip() else None,
        iterate=parse("iterate_query", config.iterate_query),
        update=(
            parse("update_query", config.update_query, UPDATE_VARIABLES)
            if config.update_query.strip()
            else None
        ),
    )
