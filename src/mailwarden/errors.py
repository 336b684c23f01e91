"""The one exception tree of mailwarden.

Three outcomes, three mechanisms: a *denial* is a returned ``Denied`` value, never
an exception; a *temporary failure* is a :class:`TemporaryFailure` raised by whatever
talks to a backend and turned into ``Unavailable`` by the engine; *malformed input*
is a :class:`ProtocolError` raised by a parser and handled by the front end that
owns the connection.

::

    MailwardenError                    base of everything raised on purpose
    ├── ConfigError                    config/, confignames.py; caught by cli/ (exit 78)
    │   └── InvalidValue               config/build.py: one value refused while a table is
    │                                  built (directories/sql/queries.py: a query); config.loads
    │                                  and confignames re-raise it naming the file
    ├── ProtocolError                  the *peer's* error: protocols/*, sasl/*; caught by the
    │                                  owning front end, which closes only that connection
    │                                  / request
    ├── LocalProtocolError             *our* error: a protocol core or mechanism driven out
    │                                  of turn (protocols/*, sasl/*); a bug, never caught
    │                                  before the connection boundary (also a RuntimeError)
    ├── HttpRefused                    frontends/http.py, web/: a request answered with a
    │   │                              4xx status and message; caught by the same handler
    │   └── BodyTooLarge               the request body is over http.max_body_bytes (413)
    ├── TemporaryFailure               a backend could not answer; caught by Engine,
    │   │                              which returns Unavailable (never Denied)
    │   ├── DirectoryUnavailable       directories/*: database or LDAP down, timeout
    │   │   └── DirectoryMissing       directories/sqlite/: no database file yet; the
    │   │                              command line exits 78 (run ``mailwarden init``)
    │   ├── HashingUnavailable         hashing/pool.py: worker pool broken or shut down
    │   ├── ProviderUnavailable        oauth2/: the identity provider (discovery, keys,
    │   │                              introspection) did not answer, timed out or answered
    │   │                              5xx; the engine returns Unavailable, never a refusal
    │   ├── StoreUnavailable           stores/*: Redis down or slow; caught by the guard,
    │   │                              which carries on with local state (never Unavailable)
    │   ├── StateUnavailable           state/*: the state store (administrators, tokens,
    │   │                              second factors, audit log) cannot answer; a 503
    │   ├── MailUnsent                 mailgate/mail.py: the MTA refused a reply; the
    │   │                              gateway command exits 75
    │   ├── InProgress                 mailgate/replay.py: another delivery of the same
    │   │                              message is being processed; exit 75, MTA retries
    │   ├── DaemonDown                 checkpassword.py: the daemon's socket is missing or
    │   │                              refuses connections; caught there, which decides
    │   │                              locally instead (or exits 111 with via = "daemon")
    │   ├── DaemonClosed               client.py: the daemon closed the control connection
    │   │                              before its reply was complete (also an OSError)
    │   ├── RelayError                 cluster/relay.py: the mail host could not be used
    │   │                              before the session started; checkpassword exits 111
    │   └── AccountChanged             directories/*: another writer kept changing the
    │       │                          account during a compare-and-swap write; the
    │       │                          CLI exits 75, the admin API answers 409, the
    │       │                          gateway exits 75 (the MTA retries)
    │       └── EntryChanged           directories/ldap/: one compare-and-swap attempt
    │                                  lost; caught by the directory, which reads again
    ├── SchemeError                    schemes/*: a stored hash cannot be used
    │   ├── UnknownScheme              ``{FOO}`` names no registered scheme
    │   └── MalformedHash              the data after ``{SCHEME}`` is not valid for it
    ├── NotPermitted                   accounts/staff.py, auth/roles.py: the administrator's
    │                                  role or the token's scope does not allow the action;
    │                                  the admin API answers 403, the web page 403
    ├── AccountError                   directories/*: a write was refused; caught by the
    │   │                              CLI / admin API and shown to the administrator
    │   ├── AccountExists              create() of a uid or address already taken
    │   │   └── DuplicateKey           directories/sql/: a write broke a unique index
    │   │                              (``constraint`` names it)
    │   ├── AccountNotFound            update()/delete() of a uid that does not exist
    │   ├── InvalidAccount             a field value breaks a rule (bad username, ...)
    │   └── WriteRefused               directories/sql/ (Dovecot-style mode): a write the
    │                                  site's schema is not written through (only
    │                                  passwords, through ``sql.update_query``)
    ├── ImportError_                   accounts/linebook.py: a whole import cannot proceed
    │   │                              (its temporary file failed); import exits 75
    │   └── PasswdFileError            accounts/passwdfile.py: one line is not an account
    ├── VerificationError              accounts/openpgp.py: untrusted mail; caught by the
    │   │                              gateway: logged, no reply
    │   └── Unsigned                   no clearsigned body or PGP/MIME signature at all
    ├── Replayed                       mailgate/replay.py: seen before or outside the clock
    │                                  window; caught by the gateway, reported to the signer
    ├── TooComplex                     mailgate/mime.py: MIME nested too deep or too many
    │                                  parts; accounts/openpgp.py turns it into VerificationError
    └── FieldError                     accounts/*: an account field's value is
                                       malformed (a ``change`` line, a web form); caught by
                                       mailgate.changes (halts, reports why) and the web page

A ``SchemeError`` met while verifying a login is logged by the engine and the login
is denied: a stored value that can never verify is the administrator's problem, and
treating it as temporary would make the client retry forever.
"""

from __future__ import annotations


class MailwardenError(Exception):
    """Base class of every exception mailwarden raises on purpose."""


class ConfigError(MailwardenError):
    """The configuration file is unreadable or a key has a wrong value.

    The message always names the file, the key path and what was expected.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ""
        if path is not None:
            where = f"{path}: "
        if key is not None:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class ProtocolError(MailwardenError):
    """The peer sent something the protocol does not allow.

    Raised by sans-I/O cores; the front end answers as the protocol says and
    closes only the offending connection (or request).
    """


class InvalidValue(ConfigError):
    """One value refused while a section is built: ``key`` (its path) and what was
    ``expected``. The file is not known there; ``config.loads`` catches it and raises
    a ConfigError that names the file too."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(f"expected {expected}", key=key)
        self.expected = expected


class LocalProtocolError(MailwardenError, RuntimeError):
    """Our own code drove a sans-I/O core or a SASL mechanism against its rules: a
    step out of turn, a reply to a request that is not pending, data after the end.

    The peer's mistakes are :class:`ProtocolError` (as h11 tells RemoteProtocolError
    from LocalProtocolError): a front end that catches those to close one connection
    must not mistake a bug of ours for the client's fault. Nothing catches this one
    before the connection boundary's ``except Exception``, which logs it.
    """


class HttpRefused(MailwardenError):
    """An HTTP request answered with ``status`` (4xx) and a message: a form that cannot
    be read, a cross-site form, an unknown page. Raised and caught inside the request
    handler of frontends/http.py or the web page (frontends/web/)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLarge(HttpRefused):
    """The request body is larger than ``http.max_body_bytes`` (413)."""

    def __init__(self, message: str = "request body too large") -> None:
        super().__init__(413, message)


class TemporaryFailure(MailwardenError):
    """A backend could not give an answer now; the client should retry later."""


class DirectoryUnavailable(TemporaryFailure):
    """The directory (SQLite file, LDAP servers) failed, timed out or is closed."""


class DirectoryMissing(DirectoryUnavailable):
    """The embedded database does not exist yet (or is empty): ``mailwarden init`` was not run.

    Login peers see a temporary failure, like any directory that cannot answer; the
    command line (cli/) reports it as a configuration error (exit 78), since only an
    administrator can fix it: a retry would never succeed.
    """


class AccountChanged(TemporaryFailure):
    """The account changed meanwhile, every time a write was tried; nothing was written.

    Raised by directories without transactions (LDAP) after their compare-and-swap
    retries run out. Retrying the whole request is safe and will apply on top of the
    other writer's change.
    """


class EntryChanged(AccountChanged):
    """One compare-and-swap write found the entry changed since it was read. The
    directory reads again and retries; only when its attempts run out does the caller
    see :class:`AccountChanged`."""


class DaemonDown(TemporaryFailure):
    """The running daemon's socket is missing or refuses connections: it is not running.

    ``mailwarden checkpassword`` decides locally instead (``checkpassword.via = "auto"``)
    or reports a temporary failure (``"daemon"``)."""


class DaemonClosed(TemporaryFailure, ConnectionResetError):
    """The daemon closed the control connection before its reply was complete.

    Raised by client.py; an OSError too, so callers that handle a broken connection
    handle this one."""

    def __init__(self) -> None:
        super().__init__("the daemon closed the control connection")


class RelayError(TemporaryFailure):
    """The mail host could not be used before the forwarded session started (connect,
    greeting, login); ``mailwarden checkpassword`` exits 111."""


class HashingUnavailable(TemporaryFailure):
    """The hashing worker pool is shut down or broken."""


class ProviderUnavailable(TemporaryFailure):
    """The OAuth 2.0 identity provider could not be asked (connection error, timeout,
    a 5xx answer, or an answer that is not what the spec says): a bearer token cannot
    be judged now, which is never the same as a wrong token."""


class StoreUnavailable(TemporaryFailure):
    """The guard's shared state store (Redis) did not answer in time."""


class StateUnavailable(TemporaryFailure):
    """mailwarden's own state store (state/: administrators, API tokens, second
    factors, the audit log) failed, timed out or is closed."""


class NotPermitted(MailwardenError):
    """The caller is known, but its role or scope does not allow this action
    (auth/roles.py decides); front ends answer 403."""


class SchemeError(MailwardenError):
    """A stored password value cannot be used for verification."""


class UnknownScheme(SchemeError):
    """The ``{SCHEME}`` prefix names no registered password scheme."""


class MalformedHash(SchemeError):
    """The encoded data does not fit the scheme's format."""


class AccountError(MailwardenError):
    """A directory write was refused for a reason the administrator must fix."""


class AccountExists(AccountError):
    """The uid or one of the addresses already belongs to an account."""


class DuplicateKey(AccountExists):
    """An SQL write broke a unique index or primary key; ``constraint`` is its name
    as the server reported it (empty if it did not). Raised by the SQL connection
    layer; the directory above it knows which index means which field."""

    def __init__(self, message: str, *, constraint: str = "") -> None:
        super().__init__(message)
        self.constraint = constraint


class WriteRefused(AccountError):
    """The directory does not store this kind of change: the SQL directory in
    Dovecot-style mode reads a schema that belongs to another program (Postfix
    Admin...), and writes only passwords, through ``sql.update_query``; without
    that query it writes nothing."""


class AccountNotFound(AccountError):
    """No account has that uid."""


class InvalidAccount(AccountError):
    """A field value breaks a rule (username characters, negative quota, ...)."""


class ImportError_(MailwardenError):  # noqa: N801 - trailing _: not the builtin
    """A whole import cannot proceed (unreadable file, wrong format)."""


class FieldError(MailwardenError):
    """A value sent for an account field is malformed; the message says how.

    Raised by ``accounts.position``, ``accounts.sshkeys``, ``accounts.dns`` and
    ``accounts.profile``; caught by ``mailgate.changes`` and the web page. The
    text goes back to the (verified) account owner, so it may quote the input
    but never a secret.
    """
