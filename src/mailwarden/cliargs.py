"""Options the command line accepts before *and* after the subcommand.

``mailwarden -c FILE user list`` and ``mailwarden user list -c FILE`` are the same
call, and so are ``--format F`` before or after a command that prints records, and
``-o key=value`` (config overrides: those before and after the command all apply).
The group's own option (cli/common.py's ``main``) stores its value in the shared
``ctx.obj``; the copies here, given to the subcommands, overwrite it when given
(the one nearer the end wins). cli/ loads the config only when a command first
needs it, after every option has been read.

Belongs here: those copies and the walk that attaches ``-c`` to every command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from mailwarden.cliout import FORMAT_NAMES

#: The ``ctx.obj`` keys of the options (cli/common.py's ``main`` sets both).
CONFIG_PATH = "config_path"
FORMAT = "format"
#: The ``-o key=value`` overrides, in the order given (before and after the command).
OVERRIDES = "overrides"

OVERRIDE_HELP = (
    "Set a config key, e.g. -o guard.ban_time=600 (repeatable; wins over the file "
    "and MAILWARDEN_* variables; see docs/configuration.md)."
)


def _store(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.obj[key] = value

    return callback


def config_option() -> click.Option:
    """``-c/--config FILE`` for a subcommand."""
    return click.Option(
        ["-c", "--config"],
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_store(CONFIG_PATH),
        help="Config file (as before the subcommand).",
    )


def _extend(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    if value:
        ctx.obj[OVERRIDES] = (*ctx.obj.get(OVERRIDES, ()), *value)


def override_option() -> click.Option:
    """``-o/--option key=value`` for a subcommand (added to the group's ones)."""
    return click.Option(
        ["-o", "--option"],
        multiple=True,
        metavar="KEY=VALUE",
        expose_value=False,
        callback=_extend,
        help=OVERRIDE_HELP,
    )


def format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``--format table|tsv|json`` for a command that prints records."""
    return click.option(
        "--format",
        type=click.Choice(FORMAT_NAMES),
        expose_value=False,
        callback=_store(FORMAT),
        help="table, tsv or json (default: table on a terminal, else tsv).",
    )(fn)


def accept_config_after_subcommand(group: click.Group, *, skip: Iterable[str] = ()) -> None:
    """Give every command under ``group`` (groups too) ``-c/--config`` and ``-o``, except the
    ones named in ``skip`` (their arguments are another program's)."""
    skipped = set(skip)
    for name, command in group.commands.items():
        if name in skipped:
            continue
        command.params.append(config_option())
        # A command with an -o of its own (import dovecot-sql-conf: --output) takes
        # overrides only before its name.
        if not any(isinstance(p, click.Option) and "-o" in p.opts for p in command.params):
            command.params.append(override_option())
        if isinstance(command, click.Group):
            accept_config_after_subcommand(command, skip=skipped)
