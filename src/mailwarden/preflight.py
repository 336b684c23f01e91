"""What ``serve`` checks before it opens anything: the one validation of a whole config.

``confignames.load`` checks each key on its own (types, ranges, known names). Some
values can only be judged on the machine that runs the daemon: a socket owner must
exist in its user database, a certificate must be readable and match its key, the
embedded database must have been created. ``serve`` refuses such a config when it
starts; :func:`check` runs the same checks, through the same functions the daemon
calls, so that ``mailwarden check-config`` (and the unit's ``ExecStartPre``)
refuses exactly what ``serve`` would. Every problem is a
:class:`~mailwarden.errors.ConfigError` naming the key (the command line exits 78).

Nothing here binds or listens: what can only fail at that moment (an address in
use, a socket folder that cannot be created) stays ``serve``'s. The embedded database
is opened as ``serve`` opens it (pending schema steps are applied, as they would be).
"""

from __future__ import annotations

import asyncio

from mailwarden.app import open_directory, open_guard, resolve_path
from mailwarden.config import Config
from mailwarden.errors import ConfigError, DirectoryMissing, TemporaryFailure


def check(config: Config, *, workers: int | None = None) -> None:
    """ConfigError (naming the key) for the first thing ``serve`` would refuse.

    ``workers``: ``serve --workers``, which overrides ``server.workers``.
    """
    from mailwarden import prefork  # noqa: PLC0415 - each import only where needed

    prefork.check_workers(config, prefork.effective_workers(config, workers))
    if config.dovecot.enabled:
        from mailwarden.frontends.dovecot_sockets import (  # noqa: PLC0415
            trusted_peers,
            unix_listeners,
        )

        unix_listeners(config.dovecot)  # socket owners and groups exist
        trusted_peers(config.dovecot)  # so do the userdb socket's trusted users
    if config.server.control_socket:
        from mailwarden.frontends.control import control_socket_owner  # noqa: PLC0415

        control_socket_owner(config.server)  # the control socket's owner and group exist
    if config.saslauthd.enabled:
        from mailwarden.frontends.saslauthd import saslauthd_socket_owner  # noqa: PLC0415

        saslauthd_socket_owner(config.saslauthd)  # the socket's owner and group exist
    if config.http.enabled:
        _check_http(config)
    if config.oauth2.client_secret_file:
        from mailwarden.oauth2.transport import client_secret  # noqa: PLC0415

        client_secret(config.oauth2, lambda p: resolve_path(config, p))  # it can be read
    asyncio.run(_check_backends(config))


def _check_http(config: Config) -> None:
    from mailwarden.frontends.http import _tls_settings  # noqa: PLC0415
    from mailwarden.frontends.web import load_secret  # noqa: PLC0415

    http = config.http
    if http.tls_cert:
        _tls_settings(resolve_path(config, http.tls_cert), resolve_path(config, http.tls_key))
    if http.session_secret_file:
        load_secret(http, base=resolve_path(config, "."))
    if config.authpolicy.enabled:
        from mailwarden.frontends.http_policy import read_api_key  # noqa: PLC0415

        read_api_key(config.authpolicy, lambda p: resolve_path(config, p))


async def _check_backends(config: Config) -> None:
    """The directory exists (a directory that is down is not a config error), the SQL
    server's password file can be read, and the guard's store can be set up (Redis
    URL, password file)."""
    if config.directory.backend == "sqlite":
        try:
            directory = await open_directory(config)
        except DirectoryMissing as exc:
            raise ConfigError(str(exc), key="directory.path") from None
        except TemporaryFailure:
            pass  # locked or unreadable now: serve reports it when it starts
        else:
            await directory.close()
    if config.directory.backend == "sql":
        # The server may be down now (not a config error), but its password file
        # must be readable. The queries were checked when the file was loaded.
        from mailwarden.directories.sql.modes import read_password  # noqa: PLC0415

        read_password(config.sql, lambda p: resolve_path(config, p))
    guard = await open_guard(config)
    await guard.close()
