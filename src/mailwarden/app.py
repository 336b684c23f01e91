"""Composition root: the only module (with cli.py) that wires concrete classes.

It turns a :class:`~mailwarden.config.Config` into a running set of objects —
directory, hasher, engine, and (as later issues add them) front ends — and runs
the daemon until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwarden import __version__
from mailwarden.admin import AccountAdmin
from mailwarden.config import Config
from mailwarden.directories.base import Directory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.engine import Engine
from mailwarden.errors import ConfigError, TemporaryFailure
from mailwarden.guard import Guard
from mailwarden.hashing import Hasher
from mailwarden.model import Accepted, AuthAttempt, AuthOutcome, LookupOutcome
from mailwarden.stores.base import GuardStore

# The LDAP driver and the front ends are imported where they are used: every
# one-shot command (checkpassword runs once per login) would otherwise pay about
# 150 ms for imports it never needs (bench/checkpassword_start.py).

log = logging.getLogger("mailwarden")


def resolve_path(config: Config, path: str) -> Path:
    """A path from the config: relative paths are relative to the config file's folder."""
    p = Path(path)
    if p.is_absolute() or config.source.startswith("<"):
        return p
    # normpath, not resolve(): tidy "etc/../var" without following symlinks.
    return Path(os.path.normpath(Path(config.source).resolve().parent / p))


async def open_directory(config: Config, *, create: bool = False) -> Directory:
    """The configured directory backend, opened. DirectoryUnavailable if it cannot be."""
    d = config.directory
    match d.backend:
        case "sqlite":
            path = resolve_path(config, d.path)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            return await SQLiteDirectory.open(
                path, create=create, readers=d.readers, timeout=d.timeout
            )
        case "ldap":
            # The tree (base DN, schema) is the LDAP administrator's: nothing to create.
            from mailwarden.directories.ldap import LDAPDirectory  # noqa: PLC0415 - lean start

            return await LDAPDirectory.open(config.ldap)


async def open_guard(config: Config, *, via_daemon: bool = False) -> Guard:
    """The brute-force guard over the configured state store (docs/guard.md).

    ``via_daemon`` (one-shot commands that decide logins: checkpassword, pam,
    auth test): with the in-memory store, borrow the running daemon's state over
    its control socket, so that its bans hold here and our failures count there.
    """
    store: GuardStore | None = None
    control = config.server.control_socket
    if via_daemon and config.guard.store == "memory" and control:
        path = resolve_path(config, control)
        if path.exists():
            from mailwarden.stores.control import ControlStore  # noqa: PLC0415 - lean start

            store = ControlStore(path)
    if config.guard.store == "redis":
        raise ConfigError("the Redis store is not part of this build yet", key="guard.store")
    return Guard(config.guard, store)


@dataclass(slots=True)
class App:
    """Everything one mailwarden process runs."""

    config: Config
    directory: Directory
    hasher: Hasher
    engine: Engine
    admin: AccountAdmin

    async def close(self) -> None:
        await self.engine.drain()
        await self.engine.guard.close()
        await self.directory.close()
        self.hasher.close()


@contextlib.asynccontextmanager
async def running_app(
    config: Config, *, create: bool = False, guard_via_daemon: bool = False
) -> AsyncIterator[App]:
    """Build the app, and close everything it opened on the way out (``guard_via_daemon``:
    see :func:`open_guard`)."""
    directory = await open_directory(config, create=create)
    hasher = Hasher(workers=config.hashing.workers, queue_limit=config.hashing.queue_limit)
    engine = Engine(
        directory=directory,
        hasher=hasher,
        config=config,
        guard=await open_guard(config, via_daemon=guard_via_daemon),
    )
    await engine.start()
    app = App(
        config=config,
        directory=directory,
        hasher=hasher,
        engine=engine,
        admin=AccountAdmin(
            directory=directory,
            hasher=hasher,
            engine=engine,
            default_scheme=config.passwords.scheme,
        ),
    )
    try:
        yield app
    finally:
        await app.close()


async def authenticate_and_describe(
    app: App, attempt: AuthAttempt, service: str
) -> tuple[AuthOutcome, LookupOutcome | None]:
    """Decide ``attempt``; on success also fetch the userdb fields. Waits for any
    rehash the login started, since a one-shot command exits right after."""
    outcome = await app.engine.authenticate(attempt)
    record = (
        await app.engine.lookup(outcome.user, service=service)
        if isinstance(outcome, Accepted)
        else None
    )
    await app.engine.drain()
    return outcome, record


async def describe(app: App, *, started: float) -> dict[str, Any]:
    """What ``mailwarden status`` shows: the process, its backends and counters."""
    guard = app.engine.guard
    cache = app.engine.cache
    try:
        await app.directory.ping()
        directory_state = "ok"
    except TemporaryFailure as exc:
        directory_state = f"unavailable: {exc}"
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime": round(time.time() - started, 1),
        "config": app.config.source,
        "directory": {"backend": app.config.directory.backend, "state": directory_state},
        "hashing": {
            "workers": app.hasher.workers,
            "pending": app.hasher.pending,
            "verifications": app.hasher.verifications,
        },
        "guard": {
            "enabled": app.config.guard.enabled,
            "store": app.config.guard.store,
            "degraded": guard.degraded,
            "store_errors": guard.store_errors,
            "bans": len(await guard.bans()),
        },
        "cache": {"entries": len(cache), "hits": cache.hits, "misses": cache.misses},
    }


def setup_logging(config: Config) -> None:
    level = getattr(logging, config.log.level.upper())
    if config.log.format == "json":
        fmt = (
            '{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s",'
            '"message":"%(message)s"}'
        )
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT; then drain and exit cleanly."""
    from mailwarden.frontends.control import ControlServer, start_control  # noqa: PLC0415
    from mailwarden.frontends.dovecot import start_dovecot  # noqa: PLC0415 - lean start
    from mailwarden.frontends.http import HttpServer, start_http  # noqa: PLC0415
    from mailwarden.frontends.saslauthd import start_saslauthd  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pid_file = resolve_path(config, config.server.pid_file) if config.server.pid_file else None
    async with running_app(config) as app:
        count = await app.directory.count()
        dovecot = None
        if config.dovecot.enabled:
            dovecot = await start_dovecot(
                app.engine, config.dovecot, resolve=lambda p: resolve_path(config, p)
            )
        saslauthd = None
        http: HttpServer | None = None
        control: ControlServer | None = None
        started = time.time()

        async def status() -> dict[str, Any]:
            return await describe(app, started=started)

        try:
            if config.server.control_socket:
                control = await start_control(
                    app.engine,
                    resolve_path(config, config.server.control_socket),
                    mode=config.server.control_socket_mode,
                    status=status,
                )
            if config.saslauthd.enabled:
                saslauthd = await start_saslauthd(
                    app.engine, config.saslauthd, resolve=lambda p: resolve_path(config, p)
                )
            if config.http.enabled:
                http = await start_http(
                    app.engine,
                    config.http,
                    resolve=lambda p: resolve_path(config, p),
                    admin=app.admin,
                )
            # The pid file appears only once every listener accepts: scripts and
            # tests that wait for it can connect right away.
            if pid_file is not None:
                pid_file.write_text(f"{os.getpid()}\n")
            log.info(
                "mailwarden %s serving: directory=%s (%d accounts), hashing workers=%d, config=%s",
                __version__,
                config.directory.backend,
                count,
                app.hasher.workers,
                config.source,
            )
            await stop.wait()
            log.info("shutting down")
        finally:
            if control is not None:
                await control.close()
            if http is not None:
                await http.close()
            if saslauthd is not None:
                await saslauthd.close()
            if dovecot is not None:
                await dovecot.close()
            if pid_file is not None:
                with contextlib.suppress(OSError):
                    pid_file.unlink()
    log.info("stopped")
