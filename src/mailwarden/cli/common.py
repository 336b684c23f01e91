"""What every command shares: the ``main`` group, exit codes, consoles, config
loading and running a coroutine with an open :class:`~mailwarden.app.App`.

Belongs here: helpers used by more than one command module. A command lives in
the module of its group (see the package docstring).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from mailwarden import __version__, cliargs, cliout, confignames
from mailwarden import config as config_mod
from mailwarden.accounts.audit import acting, cli_actor
from mailwarden.app import (
    App,
    running_app,
    setup_logging,
)
from mailwarden.config import Config
from mailwarden.errors import (
    AccountError,
    AccountNotFound,
    ConfigError,
    DirectoryMissing,
    MailwardenError,
    TemporaryFailure,
)
from mailwarden.loop import tune_gc

EX_USAGE = 2
EX_DATAERR = 65
EX_NOUSER = 67
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    sys.exit(code)


def _config(ctx: click.Context) -> Config:
    """The configuration, loaded on first use (``-c`` may follow the subcommand)."""
    obj: dict[str, Any] = ctx.obj
    if "config" not in obj:
        try:
            cfg = confignames.load(
                obj[cliargs.CONFIG_PATH], overrides=obj.get(cliargs.OVERRIDES, ())
            )
        except ConfigError as exc:
            fail(str(exc), EX_CONFIG)
        obj["config"] = cfg
        if not obj.get("serve"):
            # Commands print their own results; only warnings and errors go to the log.
            cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level="warning"))
        setup_logging(cfg)
    config: Config = obj["config"]
    return config


def _missing(ctx: click.Context, exc: DirectoryMissing) -> NoReturn:
    """No database yet: a setup problem (78), saying which config file pointed there."""
    source = _config(ctx).source
    if source.startswith("<"):
        fail(
            "no config file found (give -c FILE or set $MAILWARDEN_CONFIG; there is no "
            f"{config_mod.SYSTEM_CONFIG} and no ./{config_mod.LOCAL_CONFIG}), and with "
            f"the defaults: {exc}",
            EX_CONFIG,
        )
    fail(f"{source}: directory.path: {exc}", EX_CONFIG)


def _format(ctx: click.Context, as_json: bool = False) -> cliout.Format:
    """``--format`` (or a command's ``--json``); by default a table only on a terminal."""
    requested = "json" if as_json else ctx.obj.get(cliargs.FORMAT)
    return cliout.choose(requested, terminal=out.is_terminal)


def run_with_app(
    ctx: click.Context,
    fn: Callable[[App], Awaitable[T]],
    *,
    create: bool = False,
    guard_via_daemon: bool = False,
) -> T:
    """Open the directory and engine, run ``fn``, close everything; map errors to exits.

    ``guard_via_daemon``: commands that decide logins share the running daemon's
    brute-force state (app.open_guard)."""

    async def main() -> T:
        async with running_app(
            _config(ctx), create=create, guard_via_daemon=guard_via_daemon
        ) as app:
            # Every change a command makes is recorded as the person at this terminal's.
            with acting(cli_actor()):
                return await fn(app)

    tune_gc()  # a command over a million accounts allocates as a busy daemon does
    try:
        return asyncio.run(main())
    except MailwardenError as exc:
        exit_for(ctx, exc)


def exit_for(ctx: click.Context, exc: MailwardenError) -> NoReturn:
    """A command's failure as its exit (as :func:`run_with_app` maps them, also for
    work a command does outside the app); re-raised when it is none of these."""
    if isinstance(exc, DirectoryMissing):
        _missing(ctx, exc)
    if isinstance(exc, ConfigError):  # found while opening: an unreadable password file ...
        fail(str(exc), EX_CONFIG)
    if isinstance(exc, TemporaryFailure):
        fail(f"temporary failure: {exc}", EX_TEMPFAIL)
    if isinstance(exc, AccountNotFound):
        fail(str(exc), EX_NOUSER)
    if isinstance(exc, AccountError):
        fail(str(exc))
    raise exc


def read_new_password(password_stdin: bool, *, confirm: bool = True) -> bytes:
    """A new password from stdin (one line) or an interactive prompt; never from argv."""
    if password_stdin:
        line = sys.stdin.buffer.readline()
        value = line.rstrip(b"\r\n")
    else:
        value = click.prompt(
            "Enter new password", hide_input=True, confirmation_prompt=confirm
        ).encode()
    if not value:
        fail("empty password", EX_USAGE)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $MAILWARDEN_CONFIG, /etc/mailwarden/mailwarden.toml, "
    "./mailwarden.toml).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(cliout.FORMAT_NAMES),
    default=None,
    help="Output of list and show commands (default: table on a terminal, else tsv).",
)
@click.option(
    "-o",
    "--option",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help=cliargs.OVERRIDE_HELP,
)
@click.version_option(__version__, prog_name="mailwarden")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: str | None,
    output_format: str | None,
    overrides: tuple[str, ...],
) -> None:
    """mailwarden: authentication and accounts for a whole mail system."""
    # The config is loaded when a command first needs it (_config): -c may also
    # follow the subcommand. checkpassword reads the file itself (a bad file is a
    # temporary failure, 111, there; see mailwarden.checkpassword).
    ctx.obj = {
        cliargs.CONFIG_PATH: config_path,
        cliargs.FORMAT: output_format,
        cliargs.OVERRIDES: overrides,
        "serve": ctx.invoked_subcommand == "serve",
    }
