"""The dependency rules of docs/architecture.md, checked by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mailwarden"

PURE = (
    "model.py",
    "records.py",
    "loginseries.py",
    "auth/usernames.py",
    "auth/access.py",
    "accounts/rules.py",
    "accounts/sizes.py",
    "accounts/apppasswords.py",
    "accounts/passwdfile.py",
    "accounts/totp.py",
    "auth/roles.py",
    "accounts/dovecotfields.py",
    "directories/sql/dialect.py",
    "directories/sql/queries.py",
    "directories/sql/dovecotrows.py",
    "directories/sql/dovecotconf.py",
    "hashing/frames.py",
    "cluster/mailproxy.py",
    "schemes",
    "sasl",
    "protocols",
    "accounts/position.py",
    "accounts/sshkeys.py",
    "accounts/dns.py",
    "accounts/profile.py",
    "mailgate/changes.py",
    "mailgate/mime.py",
    "oauth2/claims.py",
    "oauth2/signatures.py",
    "oauth2/provider.py",
    "oauth2/cache.py",
    "history/base.py",
)
IO_MODULES = ("asyncio", "socket", "sqlite3", "ssl", "selectors", "ldap", "bonsai", "redis")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        p = SRC / part
        found.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else [])
    return found


def test_every_pure_layer_named_exists() -> None:
    """A module that moved must not silently drop out of the checks below."""
    assert [part for part in PURE if not (SRC / part).exists()] == []


def _is_pure(dotted: str) -> bool:
    """Whether ``dotted`` (a module, or a name in one) is one of the pure modules, which
    other pure modules may import (directories/sql/queries.py uses dialect.py)."""
    parts = dotted.split(".")[1:]
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end])
        if f"{path}.py" in PURE or path in PURE:
            return True
    return False


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_layers_import_no_io(path: Path) -> None:
    """Protocol cores (protocols/, sasl/, schemes/) and the other pure modules: no event
    loop, no sockets or drivers, no engine, no front end (they are driven, never ask)."""
    names = dotted_imports(path)
    bad = {n for n in names if n.split(".")[0] in IO_MODULES}
    bad |= {
        n
        for n in names
        if not _is_pure(n)
        and n.startswith(
            (
                "mailwarden.directories",
                "mailwarden.frontends",
                "mailwarden.auth.engine",
                "mailwarden.hashing.pool",
                "mailwarden.app",
            )
        )
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


# What a front end may not import: the layers below the engine (directories, the
# guard's policy and stores), the account editor and the mail gateway. It is typed
# against mailwarden.ports instead, and app.py hands it the concrete objects.
BELOW_THE_FRONTENDS = (
    "mailwarden.directories",
    "mailwarden.guard",
    "mailwarden.accounts.edit",
    "mailwarden.mailgate",
    # The state stores (state/base.py, values and the protocol, is allowed).
    "mailwarden.state.memory",
    "mailwarden.state.sqlite",
    "mailwarden.state.sql",
    "mailwarden.state.sqlschema",
    "mailwarden.state.lazy",
    "mailwarden.state.opening",
    # The login history's writer and stores (history/base.py, values, is allowed):
    # the web page and the admin API read it through the engine's recorder.
    "mailwarden.history.recorder",
    "mailwarden.history.memory",
    "mailwarden.history.redis",
    "mailwarden.history.opening",
)


def dotted_imports(path: Path) -> set[str]:
    """Every module named by an import, plus ``a.b`` for ``from a import b`` (b may be a
    module: ``from mailwarden import guard`` imports the guard)."""
    names = imports_of(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, layers: tuple[str, ...]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def frontend_violations(path: Path) -> set[str]:
    return {n for n in dotted_imports(path) if under(n, BELOW_THE_FRONTENDS)}


@pytest.mark.parametrize("path", modules("frontends"), ids=lambda p: str(p.relative_to(SRC)))
def test_frontends_never_import_directories_guard_stores_admin_or_mailgate(path: Path) -> None:
    bad = frontend_violations(path)
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_the_ports_front_ends_are_typed_against_import_only_value_types() -> None:
    """ports.py is how a front end names a lower layer without importing it, so it
    may import nothing of ours but the bottom floor."""
    ours = {n for n in imports_of(SRC / "ports.py") if n.startswith("mailwarden")}
    assert ours <= {"mailwarden.model", "mailwarden.errors"}


def test_the_frontend_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    """The rule above must not be blind to a form of import it is meant to catch."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from mailwarden import guard\n"
        "from mailwarden.guard.stores.control import ControlStore\n"
        "def f():\n"
        "    from mailwarden.accounts import edit\n"
        "    import mailwarden.directories.base\n"
        "    from mailwarden.mailgate.gateway import Gateway\n"
        "from mailwarden.accounts import rules\n"
    )
    assert frontend_violations(sample) == {
        "mailwarden.guard",
        "mailwarden.guard.stores.control",
        "mailwarden.guard.stores.control.ControlStore",
        "mailwarden.accounts.edit",
        "mailwarden.directories.base",
        "mailwarden.mailgate.gateway",
        "mailwarden.mailgate.gateway.Gateway",
    }


#: The directory modules that know only the protocol (no backend): anyone may use them.
PROTOCOL_LEVEL = (".base", ".streams")


def test_only_the_composition_root_imports_concrete_directories() -> None:
    # preflight.py checks, before serve starts, what app.py will open. The SQL state
    # store is built on the SQL directory's connection layer and schema machinery
    # (one pool, one failover rule, one way to migrate), not on a directory.
    allowed = {
        SRC / "app.py",
        SRC / "preflight.py",
        SRC / "state" / "sql.py",
        SRC / "state" / "sqlschema.py",
    }
    for path in SRC.rglob("*.py"):
        if path in allowed or path.is_relative_to(SRC / "directories") or path.parent.name == "cli":
            continue
        concrete = {
            n
            for n in imports_of(path)
            if n.startswith("mailwarden.directories.")
            and not n.endswith(PROTOCOL_LEVEL)
            # A pure module (no I/O: the SQL query parser confignames checks with) is
            # no concrete directory.
            and not _is_pure(n)
        }
        assert not concrete, f"{path.relative_to(SRC)} imports {sorted(concrete)}"


# The bottom floor: what every layer may import, and which imports nothing of ours above it.
BOTTOM_FLOOR = ("mailwarden.errors", "mailwarden.model")


@pytest.mark.parametrize("path", modules("config"), ids=lambda p: str(p.relative_to(SRC)))
def test_config_imports_only_the_bottom_floor(path: Path) -> None:
    """config is read by every layer, so it may not import any of them (not even inside a
    function): registry names are checked by mailwarden.confignames instead."""
    ours = {n for n in imports_of(path) if n == "mailwarden" or n.startswith("mailwarden.")}
    bad = {n for n in ours if n not in BOTTOM_FLOOR and not n.startswith("mailwarden.config.")}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_config_is_a_package_the_layer_test_walks() -> None:
    assert len(modules("config")) > 1


# Calls that remember the current task: a login starts inside its connection's task
# (frontends/dovecot_common.py, Connection.spawn), so request code using them would
# act on the connection. Only connection-level code may call them.
TASK_BOUND = ("asyncio.timeout(", "asyncio.timeout_at(", "current_task(", "TaskGroup(")
CONNECTION_LEVEL = {"frontends/dovecot.py", "frontends/saslauthd.py"}


@pytest.mark.parametrize("path", modules(""), ids=lambda p: str(p.relative_to(SRC)))
def test_request_code_never_holds_on_to_the_current_task(path: Path) -> None:
    if str(path.relative_to(SRC)) in CONNECTION_LEVEL:
        return
    text = path.read_text()
    assert not [call for call in TASK_BOUND if call in text]


@pytest.mark.parametrize("path", modules("auth"), ids=lambda p: str(p.relative_to(SRC)))
def test_the_auth_core_probes_no_capability_by_getattr(path: Path) -> None:
    """What a directory can do is said by its type (Directory, PasswordChecker) and
    handed over by app.py, never guessed with getattr/hasattr."""
    tree = ast.parse(path.read_text(), filename=str(path))
    probes = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
    ]
    assert not probes, f"{path.name} probes with getattr/hasattr at lines {probes}"


MAX_SOURCE_LINES = 600
"""No module in src/ is longer (issue 16): a longer one holds more than one concern."""


def test_no_source_file_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_SOURCE_LINES
    }
    assert long == {}
