"""``guard``, ``status`` and ``cache``: asking the running daemon over its control socket."""

from __future__ import annotations

import sys
from typing import Any

import click

from mailwarden import cliargs, cliout
from mailwarden.app import (
    resolve_path,
)
from mailwarden.cli.common import (
    EX_CONFIG,
    EX_NOPERM,
    EX_TEMPFAIL,
    EX_USAGE,
    _config,
    _format,
    fail,
    main,
    out,
)

# --------------------------------------------------------------------------- control socket

#: Seconds a command waits for the daemon (a guard list of many bans takes a while).
CONTROL_TIMEOUT = 30.0


def _control(ctx: click.Context, op: str, **args: Any) -> Any:
    """Ask the running daemon over its control socket (``server.control_socket``)."""
    from mailwarden.client import ask_daemon  # noqa: PLC0415
    from mailwarden.errors import DaemonClosed, ProtocolError  # noqa: PLC0415

    cfg = _config(ctx)
    if not cfg.server.control_socket:
        fail("server.control_socket is not set: the daemon has no control socket", EX_CONFIG)
    path = resolve_path(cfg, cfg.server.control_socket)
    try:
        return ask_daemon(path, op, timeout=CONTROL_TIMEOUT, **args)
    except (FileNotFoundError, ConnectionRefusedError):
        fail(f"the daemon is not running (no control socket at {path})", EX_TEMPFAIL)
    except PermissionError:
        fail(f"not allowed to use {path} (run as the daemon's user or root)", EX_NOPERM)
    except DaemonClosed as exc:
        fail(str(exc), EX_TEMPFAIL)
    except OSError as exc:
        fail(f"control socket {path}: {exc.strerror or exc}", EX_TEMPFAIL)
    except ProtocolError as exc:
        fail(str(exc))


@main.group("guard")
def guard_group() -> None:
    """Brute-force protection: list and lift bans (asks the running daemon)."""


@guard_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def guard_list(ctx: click.Context, as_json: bool) -> None:
    """Banned networks and protected accounts, with their rule and time left.

    Columns: target, kind, rule, seconds left."""
    bans = _control(ctx, "guard.list")
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array(bans, stream=sys.stdout)
        return
    table = fmt is cliout.Format.TABLE
    rows = (
        (b["target"], b["kind"], b["rule"], f"{b['ttl']} s" if table else str(b["ttl"]))
        for b in bans
    )
    columns = ("target", "kind", "rule", "expires in")
    cliout.write_rows(fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} ban(s)")


@guard_group.command("unblock")
@click.argument("target", required=False)
@click.option("--all", "everything", is_flag=True, help="Lift every ban.")
@click.pass_context
def guard_unblock(ctx: click.Context, target: str | None, everything: bool) -> None:
    """Lift a ban: a network as listed, an address, or account:UID."""
    if (target is None) != everything:
        fail("give a TARGET or --all", EX_USAGE)
    result = _control(ctx, "guard.unblock", target=target)
    from mailwarden.cli.staff import record_cli_change  # noqa: PLC0415 - no cycle at import

    record_cli_change(ctx, "ban.unblock", target or "*", ("ban",))
    out.print(f"lifted {result['lifted']} ban(s)")


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """What the running daemon is doing: backends, counters, guard and cache."""
    result = _control(ctx, "status")
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.TABLE:
        result = {
            key: ", ".join(f"{k}={v}" for k, v in value.items())
            if isinstance(value, dict)
            else value
            for key, value in result.items()
        }
    cliout.write_record(fmt, result, stream=sys.stdout, console=out)


@main.group("cache")
def cache_group() -> None:
    """The verified-login cache of the running daemon."""


@cache_group.command("flush")
@click.argument("users", nargs=-1)
@click.pass_context
def cache_flush(ctx: click.Context, users: tuple[str, ...]) -> None:
    """Forget cached logins of USERS (all users when none is given)."""
    result = _control(ctx, "cache.flush", users=list(users) if users else None)
    out.print(f"flushed {result['flushed']} entries")
