"""``import dovecot-sql-conf``: a site's Dovecot SQL config as mailwarden's ``[sql]`` section."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailwarden import config, confignames
from mailwarden.cli.common import EX_DATAERR, err, fail
from mailwarden.cli.transfer import import_group
from mailwarden.errors import ConfigError


@import_group.command("dovecot-sql-conf")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the TOML here (refused if the file exists) instead of to stdout.",
)
def import_dovecot_sql_conf(file: str, output: str | None) -> None:
    """Write the [directory] and [sql] TOML for Dovecot's dovecot-sql.conf.ext FILE.

    The queries are taken as they are (mode = "dovecot"), the connect string becomes
    hosts, port, database, user and password; connect options with no [sql] key
    (TLS settings) are named on stderr and as comments. Nothing is connected to;
    check the result with ``mailwarden check-config``. Exit 65 when FILE cannot be
    read as Dovecot's SQL config."""
    from mailwarden.directories.sql.dovecotconf import convert  # noqa: PLC0415

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}", EX_DATAERR)
    try:
        converted = convert(text, source=file)
    except ConfigError as exc:
        fail(str(exc), EX_DATAERR)
    try:  # what is written must load: a host or query mailwarden cannot take is said now
        confignames.check(config.loads(converted.toml, source=f"{file} (converted)"))
    except ConfigError as exc:
        fail(str(exc), EX_DATAERR)
    for warning in converted.warnings:
        err.print(f"warning: {warning}", markup=False)
    toml = converted.toml
    if output is None:
        sys.stdout.write(toml)
        return
    try:
        with Path(output).open("x", encoding="utf-8") as out:
            out.write(toml)
    except OSError as exc:
        fail(f"{output}: {exc}", EX_DATAERR)
    Path(output).chmod(0o600)  # it may hold the database password
    err.print(f"wrote {output}")
