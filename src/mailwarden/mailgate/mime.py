"""Parsing incoming mail within limits: MIME depth and part count, checked before and after.

Python's ``email`` parser and ``Message.walk`` recurse once per level of MIME
nesting: a message nested about a thousand levels deep (30 kB) exhausts the
interpreter's stack, and a flat one may hold tens of thousands of parts. A
request to the gateway is a short text in at most a few MIME layers
(``multipart/signed`` around ``multipart/mixed`` around ``text/plain``), so the
limits below are far above any real request and far below any danger:

* **Before parsing**, the raw bytes may mention ``multipart/`` or ``message/``
  (any case) at most :data:`MAX_CONTAINERS` times. Only parts declared that way
  make the parser recurse (a ``multipart/digest``'s parts default to
  ``message/rfc822``, but nesting further needs another declaration), so the
  depth the parser can reach is at most ``2 * MAX_CONTAINERS + 1``: safe, with
  no parser of our own to get wrong. Counting mentions anywhere, not only in
  well-formed headers, leaves no header syntax to slip past the count.
* **After parsing**, walked without recursion: at most :data:`MAX_DEPTH` levels
  and :data:`MAX_PARTS` parts.

The size is bounded before this by ``[mailgate] max_message_bytes`` (1 MiB by
default). The limits are constants, not settings: no site has a reason to
accept deeper mail. Beyond them: :class:`TooComplex`, which the gateway treats
like any unverifiable mail (logged, dropped, no reply, exit 0).
It derives from MailwardenError only, to keep this module free of GnuPG.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re

from mailwarden.errors import MailwardenError

__all__ = ["MAX_CONTAINERS", "MAX_DEPTH", "MAX_PARTS", "TooComplex", "parse"]

MAX_CONTAINERS = 64
MAX_DEPTH = 16
MAX_PARTS = 256

_CONTAINER = re.compile(rb"multipart/|message/", re.IGNORECASE)


class TooComplex(MailwardenError):
    """The mail is nested deeper or has more parts than a request ever needs.

    Raised by :func:`parse`; ``accounts.openpgp`` turns it into a VerificationError,
    so the gateway logs the mail and drops it without a reply.
    """


def parse(raw: bytes) -> email.message.Message:
    """``raw`` parsed (compat32: headers as sent); TooComplex beyond the limits."""
    containers = len(_CONTAINER.findall(raw))
    if containers > MAX_CONTAINERS:
        raise TooComplex(
            f"MIME structure too complex ({containers} multipart/message mentions,"
            f" at most {MAX_CONTAINERS})"
        )
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = 0
    stack: list[tuple[email.message.Message, int]] = [(message, 1)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > MAX_DEPTH:
            raise TooComplex(f"MIME parts nested deeper than {MAX_DEPTH} levels")
        if parts > MAX_PARTS:
            raise TooComplex(f"more than {MAX_PARTS} MIME parts")
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(
                    (sub, depth + 1) for sub in payload if isinstance(sub, email.message.Message)
                )
    return message
