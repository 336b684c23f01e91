"""A site's ``dovecot-sql.conf.ext`` to mailwarden's ``[sql]`` section (TOML text).

Pure: :func:`convert` takes the file's text and returns the TOML text;
``mailwarden import dovecot-sql-conf FILE`` (cli/sqlconf.py) reads and writes.

The file's syntax (Dovecot 2.3, ``settings_read_nosection``): ``key = value``
lines, ``#`` comments, a ``\\`` at the end of a line continues it on the next one,
a value may be wrapped in double quotes. Keys (``db-sql.c``): ``driver``
(``pgsql`` or ``mysql``), ``connect``, ``password_query``, ``user_query``,
``iterate_query``, ``update_query``, ``default_pass_scheme``,
``userdb_warning_disable``. As in Dovecot an unknown key is an error.

``connect`` is read as libpq/Dovecot's ``key=value`` list (values may be
``'quoted'``): ``host`` (repeatable: several hosts in order), ``port``,
``dbname``, ``user``, ``password``, ``connect_timeout``; other options (TLS, option
files) have no ``[sql]`` key yet and are listed as comments in the output, so
nothing is dropped silently. Queries the file does not set get Dovecot's defaults,
written out in full. Dovecot's own default ``update_query`` is *not* carried
over: mailwarden writes passwords only through a query the file names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwarden.errors import InvalidValue

KNOWN_KEYS = frozenset(
    {
        "driver",
        "connect",
        "password_query",
        "user_query",
        "iterate_query",
        "update_query",
        "default_pass_scheme",
        "userdb_warning_disable",
    }
)
DRIVERS = {"pgsql": "postgresql", "mysql": "mariadb"}
DEFAULT_QUERIES = {
    "password_query": "SELECT username, domain, password FROM users "
    "WHERE username = '%n' AND domain = '%d'",
    "user_query": "SELECT home, uid, gid FROM users WHERE username = '%n' AND domain = '%d'",
    "iterate_query": "SELECT username, domain FROM users",
}
MAX_FILE_SIZE = 1024 * 1024


@dataclass(slots=True)
class Connect:
    """What ``connect = ...`` says."""

    hosts: list[str] = field(default_factory=list)
    port: int = 0
    dbname: str = ""
    user: str = ""
    password: str = ""
    connect_timeout: float = 0.0
    unknown: list[str] = field(default_factory=list)


def read_settings(text: str, *, source: str = "dovecot-sql.conf.ext") -> dict[str, str]:
    """The file's ``key = value`` settings; InvalidValue naming the line otherwise."""
    if len(text) > MAX_FILE_SIZE:
        raise InvalidValue(source, f"a file smaller than {MAX_FILE_SIZE} bytes")
    settings: dict[str, str] = {}
    pending = ""
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending:
            start = lineno
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line.strip()).strip()
        pending = ""
        if line.startswith("!include"):
            raise InvalidValue(f"{source}:{start}", "no !include (copy the included settings in)")
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise InvalidValue(f"{source}:{start}", "a line of the form key = value")
        if key not in KNOWN_KEYS:
            raise InvalidValue(f"{source}:{start}", f"a known setting ({key!r} is not one)")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        settings[key] = value
    if pending:
        raise InvalidValue(f"{source}:{start}", "a line after the final '\\'")
    return settings


def parse_connect(text: str, *, source: str = "connect") -> Connect:
    """``host=a host=b dbname=x user=y password='p w' port=5432``."""
    out = Connect()
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise InvalidValue(source, f"key=value pairs ({text[i:]!r} has no '=')")
        key = text[i:eq].strip()
        i = eq + 1
        value, i = _connect_value(text, i, source)
        match key:
            case "host":
                out.hosts.append(value)
            case "port":
                if not value.isdigit() or not 0 < int(value) < 65536:
                    raise InvalidValue(source, f"a TCP port (port={value!r})")
                out.port = int(value)
            case "dbname":
                out.dbname = value
            case "user":
                out.user = value
            case "password":
                out.password = value
            case "connect_timeout":
                try:
                    out.connect_timeout = float(value)
                except ValueError:
                    raise InvalidValue(source, f"a number (connect_timeout={value!r})") from None
            case _:
                out.unknown.append(f"{key}={value}")
    return out


def _connect_value(text: str, i: int, source: str) -> tuple[str, int]:
    n = len(text)
    if i < n and text[i] == "'":
        chars: list[str] = []
        i += 1
        while i < n and text[i] != "'":
            if text[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(text[i])
            i += 1
        if i >= n:
            raise InvalidValue(source, "a closing quote")
        return "".join(chars), i + 1
    start = i
    while i < n and not text[i].isspace():
        i += 1
    return text[start:i], i


@dataclass(frozen=True, slots=True)
class Converted:
    """The TOML text, and what the administrator must look at (connect options
    that have no ``[sql]`` key, such as TLS settings)."""

    toml: str
    warnings: tuple[str, ...]


def convert(text: str, *, source: str = "dovecot-sql.conf.ext") -> Converted:
    """The ``[directory]`` and ``[sql]`` TOML for the file's ``text``."""
    settings = read_settings(text, source=source)
    for key in ("driver", "connect"):
        if key not in settings:
            raise InvalidValue(f"{source}: {key}", "a value (Dovecot requires it)")
    driver = DRIVERS.get(settings["driver"])
    if driver is None:
        raise InvalidValue(
            f"{source}: driver", f"pgsql or mysql (not {settings['driver']!r}: no SQL server)"
        )
    connect = parse_connect(settings["connect"], source=f"{source}: connect")
    lines = [
        f"# [sql] from {source} (mailwarden import dovecot-sql-conf); docs/sql.md",
        "[directory]",
        'backend = "sql"',
        "",
        "[sql]",
        'mode = "dovecot"',
        f"driver = {toml_string(driver)}",
    ]
    if connect.hosts:
        lines.append("hosts = [" + ", ".join(toml_string(h) for h in connect.hosts) + "]")
    else:
        lines.append("# no host= in connect: the driver's default (local)")
        lines.append('hosts = ["localhost"]')
    if connect.port:
        lines.append(f"port = {connect.port}")
    if connect.dbname:
        lines.append(f"database = {toml_string(connect.dbname)}")
    if connect.user:
        lines.append(f"user = {toml_string(connect.user)}")
    if connect.password:
        lines.append('# better: password_file = "..." (a file of mode 0600), and no password')
        lines.append(f"password = {toml_string(connect.password)}")
    if connect.connect_timeout:
        lines.append(f"connect_timeout = {connect.connect_timeout}")
    warnings = tuple(
        f"connect option {option.partition('=')[0]} is not carried over (no [sql] key for it)"
        for option in connect.unknown
    )
    lines.extend(f"# {w}" for w in warnings)
    scheme = settings.get("default_pass_scheme", "MD5")
    lines.append(f"default_pass_scheme = {toml_string(scheme)}")
    for key in ("password_query", "user_query", "iterate_query"):
        value = settings.get(key, DEFAULT_QUERIES[key])
        if key not in settings:
            lines.append(f"# {key}: Dovecot's default (the file does not set it)")
        lines.append(f"{key} = {toml_string(value)}")
    if "update_query" in settings:
        lines.append(f"update_query = {toml_string(settings['update_query'])}")
    else:
        lines.append("# no update_query: password changes and rehash-on-login are refused")
    return Converted("\n".join(lines) + "\n", warnings)


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string."""
    out = ['"']
    for c in value:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)
