"""The mail gateway's own exception: one class, raised by its pure parsers.

:class:`MailgateError` means *this line of the signed text is malformed*: a
position that is not in any accepted form, an SSH key line whose blob does not
decode, a DNS line with an invalid address. ``changes.process_change`` catches
it and turns it into a *halting* report line; it never escapes to the gateway.
Soft refusals (a weak key, a DNS name owned by someone else) are not exceptions:
the policy returns them as report text and processing goes on.
"""

from __future__ import annotations

from mailwarden.errors import MailwardenError


class MailgateError(MailwardenError):
    """A command line sent to the mail gateway is malformed; the message says how.

    Raised by ``mailgate.position``, ``mailgate.sshkeys`` and ``mailgate.dns``;
    caught by ``mailgate.changes``. The text goes into the report mailed back to
    the (verified) account owner, so it may quote the input but never a secret.
    """
