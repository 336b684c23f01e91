"""The exception of the self-service field rules (accounts/position, sshkeys, dns, profile).

:class:`FieldError` means *this value is malformed*: a position that is not in
any accepted form, an SSH key line whose blob does not decode, a DNS line with
an invalid address, a profile value that breaks its field's rule. The mail
gateway (``mailgate.changes``) turns it into a *halting* report line; the web
page (frontends/web/) shows it next to the form. Soft refusals (a weak key, a
DNS name owned by someone else) are not exceptions: the rules return them as
text.
"""

from __future__ import annotations

from mailwarden.errors import MailwardenError


class FieldError(MailwardenError):
    """A value sent for an account field is malformed; the message says how.

    Raised by ``accounts.position``, ``accounts.sshkeys``, ``accounts.dns`` and
    ``accounts.profile``; caught by ``mailgate.changes`` and the web page. The
    text goes back to the (verified) account owner, so it may quote the input
    but never a secret.
    """
