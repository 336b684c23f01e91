"""Composition root: the only module (with cli/) that wires concrete classes.

It turns a :class:`~mailwarden.config.Config` into a running set of objects —
directory, hasher, engine, and (as later issues add them) front ends — and runs
the daemon until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailwarden import __version__, schemes, sdnotify
from mailwarden import config as config_mod
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.accounts.staff import Staff
from mailwarden.auth.engine import Engine, MetricsSink
from mailwarden.config import Config
from mailwarden.directories.base import ChangeFeed, Directory, PasswordChecker
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import ConfigError, HashingUnavailable, TemporaryFailure
from mailwarden.frontends.base import LISTENER_KEYS, Frontend
from mailwarden.frontends.inherited import InheritedSockets
from mailwarden.guard.policy import Guard
from mailwarden.guard.stores.base import GuardStore
from mailwarden.hashing.pool import Hasher
from mailwarden.history.opening import open_history
from mailwarden.model import Accepted, AuthAttempt, AuthOutcome, LookupOutcome, UserRecord
from mailwarden.oauth2 import TokenVerifier, open_verifier
from mailwarden.state.opening import open_state

if TYPE_CHECKING:
    from mailwarden.metrics import Metrics

# The LDAP driver and the front ends are imported where they are used: every
# one-shot command (checkpassword runs once per login) would otherwise pay about
# 150 ms for imports it never needs (bench/checkpassword_start.py).

log = logging.getLogger("mailwarden")

T = TypeVar("T")


def resolve_path(config: Config, path: str) -> Path:
    """A path from the config: relative paths are relative to the config file's folder
    (:func:`mailwarden.config.config_relative`)."""
    return Path(config_mod.config_relative(config.source, path))


def write_pid_file(path: Path) -> None:
    """Write this process's pid to ``path`` at once: a reader sees the whole pid or no
    file, never an empty one (a new file renamed over the old)."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    part.write_text(f"{os.getpid()}\n")
    part.replace(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """The opened directory, and the same object as the engine's password checker
    when it verifies passwords itself (LDAP with ``verify = "rebind"``)."""

    directory: Directory
    checker: PasswordChecker | None = None
    #: Writes by other nodes (a shared SQL directory): the daemon's engine drops
    #: its cached logins of the accounts they touch.
    changes: ChangeFeed | None = None
    #: Drops the directory's own cache of looked-up accounts for these names (None:
    #: all): linked to the engine's login cache, so every flush reaches it.
    forget: Callable[[Iterable[str] | None], object] | None = None


async def open_backend(config: Config, *, create: bool = False) -> Backend:
    """The configured directory backend, opened. DirectoryUnavailable if it cannot be."""
    d = config.directory
    match d.backend:
        case "sqlite":
            path = resolve_path(config, d.path)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            sqlite = await SQLiteDirectory.open(
                path, create=create, readers=d.readers, timeout=d.timeout, cache_size=d.cache_size
            )
            return Backend(directory=sqlite)
        case "ldap":
            # The tree (base DN, schema) is the LDAP administrator's: nothing to create.
            from mailwarden.directories.ldap import LDAPDirectory  # noqa: PLC0415 - lean start

            ldap = await LDAPDirectory.open(config.ldap)
            rebind = config.ldap.verify == "rebind"
            return Backend(directory=ldap, checker=ldap if rebind else None)
        case "sql":
            from mailwarden.directories.sql.modes import open_sql_backend  # noqa: PLC0415

            sql = await open_sql_backend(
                config.sql,
                lambda p: resolve_path(config, p),
                create=create,
                cache_size=d.cache_size,
            )
            return Backend(directory=sql.directory, changes=sql.changes, forget=sql.forget)


async def open_directory(config: Config, *, create: bool = False) -> Directory:
    """The configured directory backend, opened (:func:`open_backend`)."""
    return (await open_backend(config, create=create)).directory


def build_engine(
    config: Config,
    *,
    directory: Directory,
    hasher: Hasher,
    guard: Guard | None = None,
    metrics: MetricsSink | None = None,
    password_checker: PasswordChecker | None = None,
    tokens: TokenVerifier | None = None,
) -> Engine:
    """The engine, with what it needs to know of the front ends (engine_options)."""
    return Engine(
        directory=directory,
        hasher=hasher,
        config=config,
        guard=guard,
        metrics=metrics,
        password_checker=password_checker,
        tokens=tokens,
        **engine_options(config),
    )


def engine_options(config: Config) -> dict[str, Any]:
    """What the engine learns of the front ends' settings, as arguments (it reads no
    front-end section itself): the SASL mechanisms the Dovecot sockets offer and
    their anonymous user. Also passed again on SIGHUP (Engine.reconfigure)."""
    return {
        "mechanisms": config.dovecot.mechanisms,
        "anonymous_user": config.dovecot.anonymous_username or None,
    }


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
            from mailwarden.guard.stores.control import ControlStore  # noqa: PLC0415 - lean start

            store = ControlStore(path)
    if config.guard.store == "redis":
        from mailwarden.guard.stores.redis import RedisStore  # noqa: PLC0415 - lean start

        store = await RedisStore.open(config.guard.redis, resolve=lambda p: resolve_path(config, p))
    return Guard(config.guard, store)


@dataclass(slots=True)
class App:
    """Everything one mailwarden process runs."""

    config: Config
    directory: Directory
    hasher: Hasher
    engine: Engine
    admin: AccountAdmin
    staff: Staff

    async def close(self) -> None:
        await self.engine.drain()
        await self.engine.bearer.aclose()
        await self.engine.guard.close()
        await self.staff.store.close()
        await self.directory.close()
        self.hasher.close()
        await self.hasher.wait_closed()


def expensive_policy(config: Config) -> bool:
    """Whether new passwords get an expensive scheme (then most logins will need one)."""
    scheme = schemes.SCHEMES.get(config.passwords.scheme.upper().partition(".")[0])
    return scheme is not None and scheme.heavy


@contextlib.asynccontextmanager
async def running_app(
    config: Config,
    *,
    create: bool = False,
    guard_via_daemon: bool = False,
    daemon: bool = False,
    metrics: MetricsSink | None = None,
) -> AsyncIterator[App]:
    """Build the app, and close everything it opened on the way out (``guard_via_daemon``:
    see :func:`open_guard`; ``daemon``: ``serve``, which hashes in worker processes
    when ``hashing.processes`` is on: started now when new passwords get an expensive
    scheme, else with the first expensive hash; ``metrics``: where the engine reports)."""
    backend = await open_backend(config, create=create)
    directory = backend.directory
    processes = daemon and config.hashing.processes
    hasher = Hasher(
        workers=config.hashing.workers,
        queue_limit=config.hashing.queue_limit,
        processes=processes,
    )
    if processes and expensive_policy(config):
        # Logged by the pool; the first expensive hash tries again.
        with contextlib.suppress(HashingUnavailable):
            await hasher.start()
    engine = build_engine(
        config,
        directory=directory,
        hasher=hasher,
        guard=await open_guard(config, via_daemon=guard_via_daemon),
        metrics=metrics,
        password_checker=backend.checker,
        tokens=open_verifier(config.oauth2, lambda p: resolve_path(config, p)),
    )
    await engine.start(sample=daemon)
    if backend.forget is not None:
        engine.cache.link(backend.forget)
    if daemon and backend.changes is not None:
        backend.changes.subscribe(engine.directory_changed)
    staff = Staff.for_site(open_state(config), hasher, config.http, guard=engine.guard)
    engine.history = open_history(config, engine.guard, staff.store, engine.history_uid)
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
            audit=staff.audit,
        ),
        staff=staff,
    )
    try:
        yield app
    finally:
        await app.close()


async def authenticate_and_describe(
    app: App, attempt: AuthAttempt, service: str
) -> tuple[AuthOutcome, LookupOutcome | None]:
    """Decide ``attempt``; on success also the userdb answer, which the outcome
    carries (no second directory read). Waits for any rehash the login started,
    since a one-shot command exits right after."""
    outcome = await app.engine.authenticate(attempt)
    record = (
        UserRecord(user=outcome.user, account=outcome.account, fields=outcome.userdb_fields)
        if isinstance(outcome, Accepted)
        else None
    )
    await app.engine.drain()
    return outcome, record


#: Keys whose change needs a restart: they decide what is bound, opened or forked.
#: A SIGHUP keeps their running values and says which ones changed.
RESTART_KEYS: dict[str, tuple[str, ...]] = {
    "directory": (),  # every key
    "ldap": (),
    "hashing": (),
    "server": (),
    "guard": ("store", "redis"),
    "dovecot": ("enabled", "tcp_listen"),
    "saslauthd": ("enabled",),
    "http": ("enabled",),
    "oauth2": (),  # the verifier, its key set and caches are built once
    "history": ("enabled",),
}


def split_reload(
    old: Config, new: Config, *, move_listeners: bool = True
) -> tuple[Config, list[str]]:
    """The config a SIGHUP applies (``new`` with every restart-only key kept at its
    running value) and the restart-only keys that differ."""
    restart = dict(RESTART_KEYS)
    if not move_listeners:
        for section, keys in LISTENER_KEYS.items():
            restart[section] = (*restart[section], *keys)
    changed: list[str] = []
    sections: dict[str, Any] = {}
    for section, keys in restart.items():
        old_part, new_part = getattr(old, section), getattr(new, section)
        if not keys:
            if old_part != new_part:
                changed.append(section)
            sections[section] = old_part
            continue
        kept = {k: getattr(old_part, k) for k in keys}
        changed.extend(f"{section}.{k}" for k in keys if getattr(new_part, k) != kept[k])
        sections[section] = dataclasses.replace(new_part, **kept)
    return dataclasses.replace(new, **sections), changed


@dataclass(slots=True, kw_only=True)
class Running:
    """What a SIGHUP reconfigures in a running daemon."""

    config: Config
    app: App
    #: The started front ends (frontends/base.py); a moved one is replaced in place.
    frontends: list[Frontend]
    inherited: bool = False  # a worker of serve --workers: sockets are the supervisor's

    async def reload(self) -> bool:
        """Re-read the config file; apply what can change live, flush the caches.

        A file that does not load keeps everything as it runs (logged as an error).
        Listeners whose address changed are moved: the new one is opened, the old
        one stops accepting (its connections finish); unchanged listeners stay
        open. The directory, hashing pool, guard store and the keys in RESTART_KEYS
        need a restart (logged when they changed). Requests in flight finish with the
        settings they started with; no connection closes.
        """
        from mailwarden import confignames  # noqa: PLC0415

        try:
            new = confignames.load(self.config.source, overrides=self.config.overrides)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            return False
        effective, restart = split_reload(self.config, new, move_listeners=not self.inherited)
        if effective.log != self.config.log:
            setup_logging(effective, with_pid=_LOGGING["with_pid"])
        old, self.config = self.config, effective
        self.app.engine.reconfigure(effective, **engine_options(effective))
        for i, frontend in enumerate(self.frontends):
            try:
                self.frontends[i] = await frontend.reconfigure(
                    old, effective, move=not self.inherited
                )
            except ConfigError as exc:
                log.error("reload: %s; that listener stays where it was", exc)
        flushed = await self.app.engine.flush_cache(None)
        if restart:
            log.warning("reload: %s changed; restart to apply", ", ".join(restart))
        log.info("reloaded %s (%d cache entries flushed)", effective.source, flushed)
        return True


async def check_backends(app: App) -> dict[str, str]:
    """``/readyz``: "ok", or "<state>: <what is wrong>", for the directory and the guard's
    store (the HTTP front end shows only the state word and logs the rest)."""
    checks: dict[str, str] = {}
    try:
        await app.directory.ping()
        checks["directory"] = "ok"
    except TemporaryFailure as exc:
        checks["directory"] = f"unavailable: {exc}"
    guard = app.engine.guard
    await guard.check_store()
    if guard.degraded:
        checks["guard_store"] = f"degraded: using local state ({guard.store_problem})"
    else:
        checks["guard_store"] = "ok"
    return checks


async def describe(
    app: App, *, started: float, listeners: list[str] | None = None
) -> dict[str, Any]:
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
        "decisions": dict(sorted(app.engine.decisions.items())),
        "listeners": listeners or [],
    }


_LOGGING = {"with_pid": False}


def setup_logging(config: Config, *, with_pid: bool = False) -> None:
    """Log to stderr; ``with_pid`` (``serve --workers``): every line names its process."""
    _LOGGING["with_pid"] = with_pid
    level = getattr(logging, config.log.level.upper())
    handler = logging.StreamHandler(sys.stderr)
    from mailwarden.logs import JsonFormatter, TextFormatter  # noqa: PLC0415 - lean start

    if config.log.format == "json":
        handler.setFormatter(JsonFormatter(with_pid=with_pid))
    else:
        handler.setFormatter(TextFormatter(with_pid=with_pid))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # A decision the caller asked to debug is logged whatever the level.
    logging.getLogger("mailwarden.debug").setLevel(logging.INFO)


def build_frontends(
    app: App,
    config: Config,
    *,
    inherited: InheritedSockets | None,
    status: Callable[[], Awaitable[dict[str, Any]]],
    metrics: Metrics | None,
) -> list[Frontend]:
    """The enabled front ends, built and not yet started, in the order they start."""
    from mailwarden.frontends.control import (  # noqa: PLC0415 - lean start
        ControlServer,
        control_socket_owner,
    )
    from mailwarden.frontends.dovecot import DovecotServer  # noqa: PLC0415
    from mailwarden.frontends.dovecot_common import DovecotState  # noqa: PLC0415
    from mailwarden.frontends.http import HttpServer  # noqa: PLC0415
    from mailwarden.frontends.saslauthd import SaslauthdServer  # noqa: PLC0415

    def resolve(path: str) -> Path:
        return resolve_path(config, path)

    async def readiness() -> dict[str, str]:
        return await check_backends(app)

    engine = app.engine
    built: list[Frontend] = []
    if config.dovecot.enabled:
        state = DovecotState(engine, config.dovecot)
        built.append(DovecotServer(state, resolve=resolve, inherited=inherited))
    if control := config.server.control_socket:
        built.append(
            ControlServer(
                engine,
                status,
                socket_path=resolve(control),
                mode=config.server.control_socket_mode,
                owner=control_socket_owner(config.server),
                inherited=inherited.get("server.control_socket", control)[0] if inherited else None,
                failure_delay=config.checkpassword.failure_delay,
            )
        )
    if config.saslauthd.enabled:
        built.append(
            SaslauthdServer(engine, config.saslauthd, resolve=resolve, inherited=inherited)
        )
    if config.http.enabled:
        built.append(
            HttpServer(
                engine,
                config.http,
                resolve=resolve,
                inherited=inherited,
                admin=app.admin,
                staff=app.staff,
                metrics=metrics,
                readiness=readiness,
                shutdown_timeout=config.server.shutdown_timeout,
                authpolicy=config.authpolicy,
            )
        )
    return built


async def serve(
    config: Config,
    *,
    inherited: InheritedSockets | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run the daemon until SIGTERM or SIGINT; then drain and exit cleanly.

    A worker of ``serve --workers`` (prefork.py) passes the listening sockets its
    supervisor bound (``inherited``) and ``ready``, called instead of writing the pid
    file and telling systemd once every listener accepts. Under socket activation
    without workers (prefork.serve_activated) ``inherited`` comes without ``ready``.
    """
    from mailwarden.frontends.connlimit import check_fd_budget, raise_fd_limit  # noqa: PLC0415

    fd_limit = raise_fd_limit()  # every connection is a file descriptor (connlimit.py)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hangups = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hangups.set)
    pid_file = (
        resolve_path(config, config.server.pid_file)
        if config.server.pid_file and ready is None
        else None
    )
    metrics: Metrics | None = None
    if config.http.enabled:
        from mailwarden.metrics import Metrics, state_collector  # noqa: PLC0415

        metrics = Metrics(services=config.http.metrics_services)
    async with running_app(config, daemon=True, metrics=metrics) as app:
        if metrics is not None:
            metrics.add_collector(state_collector(app.engine))
        # No count of the accounts here: on a million LDAP entries that is a minute of
        # paged searches, and a start must not depend on it (`mailwarden status` counts).
        frontends: list[Frontend] = []
        started = time.time()

        async def status() -> dict[str, Any]:
            listeners = [line for frontend in frontends for line in frontend.listening()]
            return await describe(app, started=started, listeners=listeners)

        try:
            built = build_frontends(
                app, config, inherited=inherited, status=status, metrics=metrics
            )
            for frontend in built:
                await frontend.start()
                frontends.append(frontend)  # started: closed on the way out
            caps = {k: v for f in frontends for k, v in f.connection_caps().items()}
            check_fd_budget(caps, fd_limit)
            # The pid file appears only once every listener accepts: scripts and
            # tests that wait for it can connect right away.
            # Logged before anyone is told: a supervisor or test that sees readiness
            # finds this line in the log.
            log.info(
                "mailwarden %s serving: directory=%s, hashing workers=%d, config=%s",
                __version__,
                config.directory.backend,
                app.hasher.workers,
                config.source,
            )
            if pid_file is not None:
                write_pid_file(pid_file)
            if ready is not None:
                ready()
            else:  # the process systemd started (Type=notify): Postfix and Dovecot may start
                sdnotify.notify("READY=1", f"MAINPID={os.getpid()}", "STATUS=serving")
            running = Running(
                config=config, app=app, frontends=frontends, inherited=inherited is not None
            )
            while not stop.is_set():
                waiters = {
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(hangups.wait()),
                }
                _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in pending:
                    waiter.cancel()
                if hangups.is_set() and not stop.is_set():
                    hangups.clear()
                    if ready is None:
                        sdnotify.notify("RELOADING=1")
                    await running.reload()
                    if ready is None:
                        sdnotify.notify("READY=1", "STATUS=serving")
            log.info("shutting down")
            if ready is None:
                sdnotify.notify("STOPPING=1")
        finally:
            # SIGTERM: nothing new is accepted; requests in flight get up to
            # server.shutdown_timeout to be answered (HTTP: uvicorn's own graceful
            # shutdown, bounded the same way).
            drain = config.server.shutdown_timeout
            await asyncio.gather(*(frontend.close(drain=drain) for frontend in frontends))
            if pid_file is not None:
                with contextlib.suppress(OSError):
                    pid_file.unlink()
    log.info("stopped")
