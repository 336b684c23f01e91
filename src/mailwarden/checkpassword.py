"""``mailwarden checkpassword``: the command, on a lean import path.

The wire format (fd-3 block, exit codes, environment) is
:mod:`mailwarden.protocols.checkpassword`; this module reads the descriptor, has the
login decided, and execs the subprogram (or forwards the session to the account's
mail host). It runs once per POP3 login, so its start is part of every login:
:mod:`mailwarden.entry` sends ``checkpassword`` here before anything imports click
or rich, and this module imports neither them nor asyncio, sqlite3 or the engine
unless it decides locally.

**Two ways to decide** (``[checkpassword] via``):

* ``daemon``: ask the running ``mailwarden serve`` over its control socket
  (``server.control_socket``, through :mod:`mailwarden.client`): one ``checkpassword``
  request, one reply with the decision and, for a login, the userdb fields the
  engine's outcome carries (:mod:`mailwarden.protocols.checkpassword`). The daemon's
  engine decides, so its policy, failure delay and brute-force state (the guard)
  apply to these logins exactly as to Dovecot's and Postfix's. Start-up is a TOML
  read and one UNIX-socket round trip. The userdb fields never travel over a socket
  that anyone may use: the control socket is its owner's only (mode 0600 by default).
* ``local``: open the directory in-process and ask an engine of our own, as before
  the daemon path existed (asyncio, SQLite or LDAP imported only then).
* ``auto`` (default): the daemon when its socket is there and accepts the
  connection; ``local`` when the socket file is missing or refuses connections
  (daemon not running), when ``server.control_socket`` is off, and for APOP logins.

**APOP is always local** (``via = "daemon"``: temporary failure). The daemon's APOP
mechanism only accepts challenges it minted itself (``<spid.cuid.time.``, as
Dovecot's mech-apop.c), which is what keeps a captured APOP answer from being
replayed to its socket; qmail-popup's timestamp is not one of them.

**Config.** The daemon path loads only the two sections it uses
(``config.load(path, sections=(ServerConfig, CheckpasswordConfig))``: the same
classes, defaults and checks as a whole load, without building the others); the
whole file is validated by the daemon at start, by ``mailwarden check-config``,
and here whenever the local path loads it. A file that cannot be read or parsed
is a temporary failure (exit 111), never a wrong password.

**Logging** (``LOGLEVEL``, as qmail-ldap's auth_pop): 1 errors, 2 also refusals, 3
also successes and which path decided.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeAlias

from mailwarden import config as config_mod
from mailwarden.client import ask_daemon as ask
from mailwarden.config.classic import CheckpasswordConfig
from mailwarden.config.server import ServerConfig
from mailwarden.errors import ConfigError, DaemonClosed, DaemonDown, ProtocolError, RelayError
from mailwarden.protocols import checkpassword as cp
from mailwarden.protocols.checkpassword import Decision, Login, Refused, TempFail, Unknown

Via: TypeAlias = Literal["auto", "daemon", "local"]


def log(level: int, message: str) -> None:
    """auth_pop's LOGLEVEL: 0 silent, 1 errors (default), 2 + refusals, 3 + successes."""
    try:
        wanted = int(os.environ.get("LOGLEVEL", "1"))
    except ValueError:
        wanted = 1
    if level <= wanted:
        sys.stderr.write(f"mailwarden checkpassword: {message}\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the daemon path needs from the config file (paths already resolved)."""

    source: str
    via: Via
    timeout: float
    control_socket: str
    first_valid_uid: int
    first_valid_gid: int


def read_settings(explicit: str | None) -> Settings:
    """The config file's ``[server]`` and ``[checkpassword]``. Raises ConfigError."""
    found = config_mod.load(explicit, sections=(ServerConfig, CheckpasswordConfig))
    server, check = found[ServerConfig], found[CheckpasswordConfig]
    return Settings(
        source=found.source,
        via=check.via,
        timeout=check.timeout,
        control_socket=config_mod.config_relative(found.source, server.control_socket),
        first_valid_uid=check.first_valid_uid,
        first_valid_gid=check.first_valid_gid,
    )


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One checkpassword invocation: the fd-3 block and the environment's inputs."""

    block: cp.CheckpasswordInput
    apop_digest: bytes | None
    service: str
    lookup_only: bool
    remote_ip: str | None
    local_ip: str | None


# --------------------------------------------------------------------------- daemon path


def ask_daemon(settings: Settings, request: Request) -> Decision:
    """Decide through the running daemon's control socket, in one round trip: the
    decision and, with a login, its userdb fields. DaemonDown if it is not there."""
    query = cp.Query(
        login=request.block.login,
        secret=request.block.secret,
        service=request.service,
        lookup_only=request.lookup_only,
        remote_ip=request.remote_ip,
        local_ip=request.local_ip,
    )
    where = f"daemon at {settings.control_socket}"
    try:
        reply = ask(
            settings.control_socket, "checkpassword", timeout=settings.timeout, **query.args()
        )
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonDown(f"{settings.control_socket}: {exc.strerror}") from None
    except TimeoutError:
        return TempFail(detail=f"{where}: no reply in time (checkpassword.timeout)")
    except PermissionError:
        return TempFail(
            detail=f"{where}: permission denied (run as root or the socket's owner, or set "
            "server.control_socket_user/control_socket_group)"
        )
    except DaemonClosed:
        return TempFail(detail=f"{where}: closed the connection without a reply")
    except ProtocolError as exc:
        return TempFail(detail=f"{where}: {exc}")
    try:
        return cp.decision_from_wire(reply)
    except ProtocolError as exc:
        return TempFail(detail=f"{where}: {exc}")


# --------------------------------------------------------------------------- local path


def decide_locally(config_path: str | None, request: Request) -> Decision:
    """Decide in-process with an engine of our own (the heavy imports happen only here)."""
    import asyncio  # noqa: PLC0415 - the lean path must not pay for these
    import dataclasses  # noqa: PLC0415

    from mailwarden import confignames  # noqa: PLC0415
    from mailwarden.app import running_app, setup_logging  # noqa: PLC0415
    from mailwarden.errors import MailwardenError  # noqa: PLC0415
    from mailwarden.model import AuthAttempt, Password  # noqa: PLC0415
    from mailwarden.sasl.apop import ApopProof  # noqa: PLC0415

    try:
        cfg = confignames.load(config_path)
    except ConfigError as exc:
        return TempFail(detail=f"config: {exc}")
    # As for every one-shot command: only warnings and errors reach the log.
    setup_logging(dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level="warning")))
    block = request.block
    credentials: Password | ApopProof = (
        ApopProof(challenge=block.timestamp, digest=request.apop_digest)
        if request.apop_digest is not None
        else block.password
    )
    attempt = AuthAttempt(
        username=block.login,
        credentials=credentials,
        service=request.service,
        mechanism="APOP" if request.apop_digest is not None else "PLAIN",
        remote_ip=request.remote_ip,
        local_ip=request.local_ip,
        frontend="checkpassword",
    )

    async def go() -> Decision:
        async with running_app(cfg, guard_via_daemon=True) as app:
            if request.lookup_only:
                found = await app.engine.lookup(block.login, service=request.service)
                return cp.lookup_decision(found)
            outcome = await app.engine.authenticate(attempt)
            # A one-shot command exits right after: let a rehash the login started finish.
            await app.engine.drain()
            return cp.login_decision(outcome)

    try:
        return asyncio.run(go())
    except (MailwardenError, OSError) as exc:
        return TempFail(detail=str(exc))


# --------------------------------------------------------------------------- the command


def _read_fd3() -> cp.CheckpasswordInput:
    """The fd-3 block, read to its end (ProtocolError past ``MAX_BLOCK`` bytes)."""
    reader = cp.BlockReader()
    while (block := reader.next_event()) is None:
        reader.receive_data(os.read(3, cp.MAX_BLOCK + 1))
    return block


def decide(config: str | None, settings: Settings, request: Request) -> Decision:
    """Pick the path (module docstring), log it at LOGLEVEL 3, and decide."""
    if settings.via == "local":
        log(3, "deciding locally (checkpassword.via = local)")
        return decide_locally(config, request)
    why_not = ""
    if request.apop_digest is not None:
        why_not = "APOP logins are checked locally (the daemon accepts only its own challenges)"
    elif not settings.control_socket:
        why_not = "the daemon has no control socket (server.control_socket is off)"
    else:
        try:
            decision = ask_daemon(settings, request)
        except DaemonDown as exc:
            why_not = f"daemon not running ({exc})"
        except OSError as exc:
            return TempFail(detail=f"cannot reach the daemon: {exc}")
        else:
            log(3, f"decided by the daemon ({settings.control_socket})")
            return decision
    if settings.via == "daemon":
        return TempFail(detail=f"checkpassword.via = daemon, but {why_not}")
    log(3, f"{why_not}; deciding locally")
    return decide_locally(config, request)


def run(config: str | None, subprogram: list[str]) -> NoReturn:
    """The whole command: read fd 3, decide, then exec ``subprogram`` or exit."""
    if not subprogram:
        log(1, "usage: mailwarden checkpassword SUBPROGRAM [ARGS...]")
        sys.exit(cp.EXIT_MISUSE)
    try:
        block = _read_fd3()
        digest = cp.apop_digest(block) if block.apop else None
    except OSError as exc:
        log(1, f"cannot read descriptor 3: {exc.strerror}")
        sys.exit(cp.EXIT_MISUSE)
    except ProtocolError as exc:
        log(1, str(exc))
        sys.exit(cp.EXIT_MISUSE)
    request = Request(
        block=block,
        apop_digest=digest,
        service=os.environ.get("SERVICE") or "pop3",
        lookup_only=os.environ.get("AUTHORIZED") == "1",
        remote_ip=os.environ.get("TCPREMOTEIP") or None,
        local_ip=os.environ.get("TCPLOCALIP") or None,
    )
    settings: Settings | None = None
    try:
        settings = read_settings(config)
        decision = decide(config, settings, request)
    except ConfigError as exc:
        decision = TempFail(detail=str(exc))
    except Exception as exc:  # the process boundary
        # An uncaught exception would exit 1, which callers read as a wrong password.
        decision = TempFail(detail=f"internal error: {exc!r}")
    match decision:
        case Refused():
            log(2, f"login refused for {block.login!r} ({decision.reason})")
            sys.exit(cp.EXIT_WRONG)
        case TempFail():
            log(1, f"temporary failure for {block.login!r}: {decision.detail}")
            sys.exit(cp.EXIT_TEMPFAIL)
        case Unknown():
            log(2, f"lookup: unknown user {block.login!r}")
            sys.exit(cp.EXIT_LOOKUP_UNKNOWN)
        case Login():
            assert settings is not None  # only a decision made with them is a Login
    env = dict(os.environ)
    env.update(
        cp.login_environment(
            user=decision.user,
            fields=decision.userdb,
            shell=decision.shell,
            master_user=decision.master_user,
        )
    )
    if request.lookup_only:
        env["AUTHORIZED"] = "2"
    log(3, f"login accepted for {decision.user!r}")
    if not request.lookup_only and "host" in decision.passdb:
        sys.exit(_forward(config, decision, request))
    refused = _switch_user(decision.userdb, settings)
    if refused is not None:
        log(1, f"refusing to run {subprogram[0]} for {decision.user!r}: {refused}")
        sys.exit(cp.EXIT_TEMPFAIL)
    try:
        os.execvpe(subprogram[0], subprogram, env)  # noqa: S606 - the interface is exec
    except OSError as exc:
        log(1, f"cannot run {subprogram[0]}: {exc.strerror}")
        sys.exit(cp.EXIT_TEMPFAIL)


def _forward(config: str | None, login: Login, request: Request) -> int:
    """Cluster session forwarding: the account lives on another mail host (the engine
    said so with proxy fields). Log in there and relay instead of exec'ing locally."""
    from mailwarden.cluster import relay  # noqa: PLC0415 - forwarded sessions only
    from mailwarden.config.core import ClusterConfig  # noqa: PLC0415

    host = login.passdb["host"]
    if request.apop_digest is not None:
        # An APOP digest is bound to *our* greeting's timestamp: it cannot log in
        # on the mail host, and we never learn the plaintext. Temporary, not wrong.
        log(1, f"{login.user}: APOP logins cannot be forwarded to {host}")
        return cp.EXIT_TEMPFAIL
    try:
        cluster = config_mod.load(config, sections=(ClusterConfig,))[ClusterConfig]
    except ConfigError as exc:
        log(1, f"{login.user}: config: {exc}")
        return cp.EXIT_TEMPFAIL
    protocol: Literal["pop3", "imap"] = "imap" if request.service.lower() == "imap" else "pop3"
    try:
        port = int(login.passdb.get("port", cluster.pop3_port))
    except ValueError:
        log(1, f"{login.user}: bad port field {login.passdb.get('port')!r}")
        return cp.EXIT_TEMPFAIL
    target = relay.Target(
        host=host,
        port=port,
        protocol=protocol,
        user=login.passdb.get("destuser", login.user).encode(),
        password=request.block.secret,
        imap_method=cluster.imap_login,
        client_tag=os.environ.get("IMAPLOGINTAG", "").encode(),
    )
    log(3, f"{login.user}: forwarding {protocol} session to {host}:{target.port}")
    try:
        return relay.forward(
            target, connect_timeout=cluster.connect_timeout, idle_timeout=cluster.idle_timeout
        )
    except RelayError as exc:
        log(1, f"{login.user}: {exc}")
        return cp.EXIT_TEMPFAIL


def _switch_user(userdb: Mapping[str, str], settings: Settings) -> str | None:
    """Drop to the account's uid/gid before exec, as auth_pop does for qmail-pop3d;
    the reason to refuse instead, or None.

    Only when running as root and not under Dovecot (which sets ORIG_UID and
    makes its reply helper refuse a changed uid): Dovecot switches users itself
    from the userdb_uid/userdb_gid it is told. The ids are the userdb's ``uid`` and
    ``gid`` fields (the account's uid/gid numbers unless a userdb field overrides
    them), the same on both paths.

    **Never as root, never as a system account.** An account without a uid, or
    without a gid, would keep root's (the subprogram, a POP3 server reading the
    user's mail, would run as root or with group 0); a uid below
    ``checkpassword.first_valid_uid`` or a gid below ``first_valid_gid`` (Dovecot's
    settings and defaults, 500 and 1) is a daemon's or the system's. Such a login is
    refused as a temporary failure (111, logged): the password was right, the
    account is misconfigured, and the administrator must fix it. uid 0 is refused
    whatever the setting (first_valid_uid cannot be 0), as Dovecot hard-codes it.
    """
    if os.geteuid() != 0 or "ORIG_UID" in os.environ:
        return None
    uid, gid = userdb.get("uid", ""), userdb.get("gid", "")
    if not uid.isdigit() or not gid.isdigit():
        return f"the account has no numeric uid and gid (uid={uid!r}, gid={gid!r})"
    if int(uid) < max(settings.first_valid_uid, 1):
        return f"uid {uid} is below checkpassword.first_valid_uid ({settings.first_valid_uid})"
    if int(gid) < settings.first_valid_gid:
        return f"gid {gid} is below checkpassword.first_valid_gid ({settings.first_valid_gid})"
    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
    return None
