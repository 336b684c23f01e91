"""Sending the gateway's replies: ``sendmail -t`` or SMTP, to the verified account only.

The recipient is always the address stored on the account that the signature
selected (``Account.mail``), never the message's ``From:``, ``Reply-To:`` or
envelope sender, which anybody can forge: a reply to a forged sender would make
the gateway a tool for sending mail to strangers (backscatter), and a reply that
carries a secret must reach only the key owner's own mailbox.
"""

from __future__ import annotations

import smtplib
import socket
import subprocess
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mailwarden.config import MailgateConfig
from mailwarden.errors import TemporaryFailure


class MailUnsent(TemporaryFailure):
    """The reply could not be handed to the MTA; the gateway exits 75 (try again)."""


def from_address(config: MailgateConfig) -> str:
    return config.from_address or f"mailgate@{socket.getfqdn()}"


def build(
    config: MailgateConfig,
    *,
    to: str,
    subject: str,
    body: str,
    attachment: tuple[str, str] | None = None,
) -> EmailMessage:
    """A reply: ``body`` as text/plain, plus an optional ``(filename, text)`` attachment."""
    message = EmailMessage()
    message["From"] = from_address(config)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=from_address(config).rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(body)
    if attachment is not None:
        name, text = attachment
        message.add_attachment(text, subtype="pgp-encrypted", filename=name)
    return message


def send(config: MailgateConfig, message: EmailMessage, *, timeout: float = 60.0) -> None:
    """Hand ``message`` to the MTA; MailUnsent if it is not accepted."""
    if config.smtp_host:
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailUnsent(f"SMTP {config.smtp_host}:{config.smtp_port}: {exc}") from exc
        return
    try:
        # The program is the administrator's configuration, never message data.
        done = subprocess.run(  # noqa: S603
            [config.sendmail, "-t", "-oi"],
            input=message.as_bytes(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MailUnsent(f"{config.sendmail}: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()[:500]
        raise MailUnsent(f"{config.sendmail} exited {done.returncode}: {detail}")
