"""``serve``, ``init`` and ``check-config``: starting the daemon and its database."""

from __future__ import annotations

import sys

import click

from mailwarden.app import (
    App,
    serve,
    setup_logging,
)
from mailwarden.cli.common import (
    EX_CONFIG,
    EX_OSERR,
    EX_TEMPFAIL,
    _config,
    _missing,
    fail,
    main,
    out,
    run_with_app,
)
from mailwarden.errors import (
    ConfigError,
    DirectoryMissing,
    TemporaryFailure,
)
from mailwarden.loop import run_loop

# --------------------------------------------------------------------------- daemon


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration as 'serve' does, without starting anything: exit 78
    with the key of the first problem (a socket owner that does not exist, an
    unreadable certificate, no database yet...)."""
    from mailwarden import preflight  # noqa: PLC0415 - lean start of the other commands

    cfg = _config(ctx)
    try:
        preflight.check(cfg)
    except ConfigError as exc:
        fail(str(exc) if exc.path else f"{cfg.source}: {exc}", EX_CONFIG)
    out.print(f"{cfg.source}: OK")


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the directory: the SQLite file, or the SQL own schema, and the SQL state
    store's tables (safe to run again: existing data is kept, new migrations are
    applied)."""
    from mailwarden.state.opening import prepare_state  # noqa: PLC0415 - lean start

    async def go(app: App) -> tuple[int, str | None]:
        return await app.directory.count(), await prepare_state(app.config)

    count, state = run_with_app(ctx, go, create=True)
    out.print(f"directory ready ({_config(ctx).directory.backend}, {count} accounts)")
    if state is not None:
        out.print(state)


@main.command("serve")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes (overrides server.workers; 0: one per CPU core; more than one "
    'needs guard.store = "redis").',
)
@click.pass_context
def serve_cmd(ctx: click.Context, workers: int | None) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    from mailwarden import activation, preflight, prefork  # noqa: PLC0415 - lean start of the others

    cfg = _config(ctx)
    activated = activation.listen_fds()  # systemd's sockets (mailwarden.socket), if any
    try:
        preflight.check(cfg, workers=workers)
        count = prefork.effective_workers(cfg, workers)
        if count > 1:
            setup_logging(cfg, with_pid=True)
            sys.exit(prefork.supervise(cfg, count, activated))
        if activated:
            prefork.serve_activated(cfg, activated)
            return
        run_loop(serve(cfg))
    except DirectoryMissing as exc:
        _missing(ctx, exc)
    except TemporaryFailure as exc:
        fail(f"cannot start: {exc}", EX_TEMPFAIL)
    except ConfigError as exc:
        fail(f"cannot start: {exc}", EX_CONFIG)
    except OSError as exc:
        fail(f"cannot start: {exc}", EX_OSERR)
