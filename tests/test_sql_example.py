"""docs/sql.md's Postfix Admin worked example, run exactly as written.

The console block under "### Worked example" is read from the page: every ``$``
line is run in a temp copy of the checkout's example files, and what the page shows
after it must be what the command prints (its exit code: 0, or the ``# exit N`` the
line ends with). The only change is the one the page tells the reader to make: the
``connect`` line of the example ``dovecot-sql.conf.ext`` points at a private
PostgreSQL, and ``psql`` is given that server's socket and user.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sqlservers import PASSWORD, PG_BIN, USER, PostgresServer

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "sql.md"


def worked_example() -> list[tuple[str, int, list[str]]]:
    """(command, exit code, expected output lines) for each ``$`` line of the block."""
    text = DOCS.read_text()
    section = text.split("### Worked example", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, int, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            command, _, comment = line[2:].partition("  # ")
            code = re.match(r"exit (\d+)", comment)
            steps.append((command.strip(), int(code.group(1)) if code else 0, []))
        else:
            steps[-1][2].append(line)
    return steps


def test_the_worked_example_has_the_steps_the_page_describes() -> None:
    commands = [c for c, _, _ in worked_example()]
    assert commands[0].startswith("psql -q -d postfix -f docs/examples/postfixadmin/")
    assert any(c.startswith("mailwarden import dovecot-sql-conf") for c in commands)
    assert any(code == 77 for _, code, _ in worked_example())


def test_the_postfixadmin_worked_example_works_as_written(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database = postgres_server.create_database()
    examples = tmp_path / "docs" / "examples" / "postfixadmin"
    shutil.copytree(ROOT / "docs" / "examples" / "postfixadmin", examples)
    conf = examples / "dovecot-sql.conf.ext"
    text = conf.read_text()
    assert "connect = host=localhost dbname=postfix user=postfix password=postfix" in text
    conf.write_text(
        text.replace(
            "connect = host=localhost dbname=postfix user=postfix password=postfix",
            f"connect = host=127.0.0.1 port={postgres_server.port} dbname={database} "
            f"user={USER} password={PASSWORD}",
        )
    )
    for command, code, expected in worked_example():
        argv = shlex.split(command)
        if argv[0] == "psql":
            assert argv[1:4] == ["-q", "-d", "postfix"]
            argv = [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(postgres_server.socket_dir),
                "-p",
                str(postgres_server.port),
                "-U",
                USER,
                "-d",
                database,
                *argv[4:],
            ]
        else:
            assert argv[0] == "mailwarden", command
            argv = [sys.executable, "-m", "mailwarden", *argv[1:]]
        done = subprocess.run(
            argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )
        output = [line.rstrip() for line in (done.stdout + done.stderr).splitlines()]
        assert (done.returncode, output) == (code, expected), command
