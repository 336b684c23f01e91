"""The one exception tree of mailwarden.

Three outcomes, three mechanisms: a *denial* is a returned ``Denied`` value, never
an exception; a *temporary failure* is a :class:`TemporaryFailure` raised by whatever
talks to a backend and turned into ``Unavailable`` by the engine; *malformed input*
is a :class:`ProtocolError` raised by a parser and handled by the front end that
owns the connection.

::

    MailwardenError                    base of everything raised on purpose
    ├── ConfigError                    config/, confignames.py; caught by cli/ (exit 78)
    ├── ProtocolError                  protocols/*, sasl/*; caught by the owning front end,
    │                                  which closes only that connection / request
    ├── TemporaryFailure               a backend could not answer; caught by Engine,
    │   │                              which returns Unavailable (never Denied)
    │   ├── DirectoryUnavailable       directories/*: database or LDAP down, timeout
    │   │   └── DirectoryMissing       directories/sqlite/: no database file yet; the
    │   │                              command line exits 78 (run ``mailwarden init``)
    │   ├── HashingUnavailable         hashing/pool.py: worker pool broken or shut down
    │   ├── StoreUnavailable           stores/*: Redis down or slow; caught by the guard,
    │   │                              which carries on with local state (never Unavailable)
    │   ├── MailUnsent                 mailgate/mail.py: the MTA refused a reply; the
    │   │                              gateway command exits 75
    │   ├── InProgress                 mailgate/replay.py: another delivery of the same
    │   │                              message is being processed; exit 75, MTA retries
    │   └── AccountChanged             directories/*: another writer kept changing the
    │                                  account during a compare-and-swap write; the
    │                                  CLI exits 75, the admin API answers 409, the
    │                                  gateway exits 75 (the MTA retries)
    ├── SchemeError                    schemes/*: a stored hash cannot be used
    │   ├── UnknownScheme              ``{FOO}`` names no registered scheme
    │   └── MalformedHash              the data after ``{SCHEME}`` is not valid for it
    ├── AccountError                   directories/*: a write was refused; caught by the
    │   │                              CLI / admin API and shown to the administrator
    │   ├── AccountExists              create() of a uid or address already taken
    │   ├── AccountNotFound            update()/delete() of a uid that does not exist
    │   └── InvalidAccount             a field value breaks a rule (bad username, ...)
    ├── ImportError_                   passwdfile.py: a whole import cannot proceed
    ├── VerificationError              mailgate/pgp.py: unsigned or untrusted mail (subclass
    │                                  Unsigned); caught by the gateway: logged, no reply
    ├── Replayed                       mailgate/replay.py: seen before or outside the clock
    │                                  window; caught by the gateway, reported to the signer
    ├── TooComplex                     mailgate/mime.py: MIME nested too deep or too many
    │                                  parts; mailgate/pgp.py turns it into VerificationError
    └── MailgateError                  mailgate/errors.py: a line of a signed ``change``
                                       message is malformed; caught by mailgate.changes,
                                       which halts processing and reports why

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


class HashingUnavailable(TemporaryFailure):
    """The hashing worker pool is shut down or broken."""


class StoreUnavailable(TemporaryFailure):
    """The guard's shared state store (Redis) did not answer in time."""


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


class AccountNotFound(AccountError):
    """No account has that uid."""


class InvalidAccount(AccountError):
    """A field value breaks a rule (username characters, negative quota, ...)."""


class ImportError_(MailwardenError):  # noqa: N801 - trailing _: not the builtin
    """A whole import cannot proceed (unreadable file, wrong format)."""
