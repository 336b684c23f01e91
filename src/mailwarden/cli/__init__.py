"""The ``mailwarden`` command line (with app.py, the only place that wires classes).

Exit codes follow sysexits where a caller may script around them: 0 success,
1 a refused request (account exists, bad field), 2 usage (also an unknown password
scheme, in every command), 65 an import that left records out (its summary says
which), 67 no such user, 71 a listener could not be opened, 75 temporary failure
(directory down) and doveadm's fatal errors, 77 login refused (``auth test``),
78 configuration error (also: no config file and no database yet).

How results are printed (``--format``) is :mod:`mailwarden.cliout`'s.

One module per command group, each registering on :data:`common.main`:
``daemon`` (serve, init, check-config), ``users`` (user ...), ``apppasswords``
(user app-password ...), ``staff`` (admin ..., token ..., audit, user reset-totp),
``transfer``
(import, export), ``migrate``, ``sqlconf`` (import dovecot-sql-conf), ``auth``
(pw, auth test/lookup, user-lookup; doveadm's conventions in ``doveadm``),
``classic`` (checkpassword, pam), ``control`` (guard,
status, cache: the running daemon) and ``mailgate`` (mailgate, ssh-keys,
dns-zone); ``common`` holds what they share. Importing this package registers
every command.
"""

from mailwarden import cliargs
from mailwarden.cli import (
    apppasswords,
    auth,
    classic,
    control,
    daemon,
    mailgate,
    migrate,
    sqlconf,
    staff,
    transfer,
    users,
)
from mailwarden.cli.classic import (
    PAM_ACCT_EXPIRED,
    PAM_AUTH_ERR,
    PAM_AUTHINFO_UNAVAIL,
    PAM_SERVICE_ERR,
    PAM_SUCCESS,
    PAM_USER_UNKNOWN,
)
from mailwarden.cli.common import main

__all__ = [
    "PAM_ACCT_EXPIRED",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_AUTH_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SUCCESS",
    "PAM_USER_UNKNOWN",
    "apppasswords",
    "auth",
    "classic",
    "control",
    "daemon",
    "mailgate",
    "main",
    "migrate",
    "sqlconf",
    "staff",
    "transfer",
    "users",
]

# checkpassword's arguments are its subprogram's, pam's pam_exec's; entry.py reads
# checkpassword's -c before the subcommand.
cliargs.accept_config_after_subcommand(main, skip=("checkpassword", "pam"))
