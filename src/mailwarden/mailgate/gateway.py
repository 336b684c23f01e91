"""The gateway itself: one signed mail in, at most one reply out.

:meth:`Gateway.handle` runs the steps in an order chosen for safety:

1. **Verify** the signature (:mod:`~mailwarden.accounts.openpgp`). Unsigned or
   unverifiable mail ends
   here *silently*: no reply (its sender is unknown, so any reply could go to a
   forged address), only a log line, and exit 0 so that the MTA does not bounce
   it to that forged address either.
2. **Select the account** whose ``pgp_fingerprint`` is the signing key's primary
   fingerprint. No account, or more than one: silent refusal as in 1.
3. **Replay and clock window** (:mod:`.replay`): from here on the signer is
   known, so refusals are reported to the account's own address. The message is
   *claimed*, not yet recorded as processed.
4. **Act**: ping, chpasswd or change, then mail the reply to ``Account.mail``.

Nothing lost, nothing done twice. The claim becomes a finished replay entry
only together with what it stands for: ``change`` commits it right after the
directory write, with the reply, which stays stored until the MTA took it (a
retry after a failed hand-over re-sends it and changes nothing). ``chpasswd``
hands the encrypted password to the MTA *first* and stores it second, so a
password is never stored that its owner cannot receive; if the store then
fails, a second mail says the first password was not stored. Any error before
the commit releases the claim: a directory or MTA outage raises
:class:`~mailwarden.errors.TemporaryFailure` out of :meth:`handle`, the command
exits 75 (EX_TEMPFAIL), and the MTA's retry is processed like a new message.
"""

from __future__ import annotations

import email
import email.policy
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from mailwarden.accounts.audit import Actor, acting
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.accounts.openpgp import SignedText, VerificationError, Verifier
from mailwarden.accounts.rules import generate_password
from mailwarden.config import MailgateConfig
from mailwarden.directories.base import Directory
from mailwarden.errors import AccountError, DirectoryUnavailable
from mailwarden.mailgate import mail
from mailwarden.mailgate.changes import ChangePolicy, ChangeResult, process_change
from mailwarden.mailgate.mail import MailUnsent
from mailwarden.mailgate.replay import Claim, ReplayCache, Replayed
from mailwarden.model import Account, AccountStatus

log = logging.getLogger("mailwarden.mailgate")


class Function(enum.StrEnum):
    """The gateway's functions: the first argument of ``mailwarden mailgate``."""

    PING = "ping"
    CHPASSWD = "chpasswd"
    CHANGE = "change"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What :meth:`Gateway.handle` did (for the log line and the tests)."""

    accepted: bool
    detail: str
    uid: str | None = None
    reply: EmailMessage | None = None


def public_record(account: Account) -> str:
    """The account as ``ping`` and ``show`` print it (never the password)."""
    lines = [f"uid: {account.uid}"]
    if account.mail:
        lines.append(f"mail: {account.mail}")
    for address in account.alternate_addresses:
        lines.append(f"alternate address: {address}")
    if account.pgp_fingerprint:
        lines.append(f"key fingerprint: {account.pgp_fingerprint}")
    for name, value in account.profile.as_dict().items():
        lines.append(f"{name}: {value}")
    for key in account.ssh_keys:
        lines.append(f"ssh key: {key}")
    for record in account.dns_records:
        lines.append(f"dns: {record}")
    return "\n".join(lines) + "\n"


def notify_daemon(control_socket: str, users: list[str], *, timeout: float = 5.0) -> bool:
    """Ask a running ``mailwarden serve`` to flush its caches for ``users``.

    Best effort: the new password is stored already and this process flushed its
    own caches; a daemon that is not running has nothing to flush. False when the
    daemon could not be told (logged by the caller).
    """
    from mailwarden.client import ask_daemon  # noqa: PLC0415
    from mailwarden.errors import ProtocolError  # noqa: PLC0415

    if not control_socket:
        return False
    try:
        ask_daemon(control_socket, "cache.flush", timeout=timeout, users=users)
    except (OSError, ProtocolError):
        return False
    return True


class Gateway:
    """Handles one message; see the module docstring for the order of the steps."""

    def __init__(
        self,
        *,
        config: MailgateConfig,
        directory: Directory,
        admin: AccountAdmin,
        verifier: Verifier,
        replay: ReplayCache,
        send: Callable[[EmailMessage], None],
        control_socket: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.directory = directory
        self.admin = admin
        self.verifier = verifier
        self.replay = replay
        self.send = send
        self.control_socket = control_socket
        self.clock = clock

    async def handle(self, function: Function, raw: bytes) -> Outcome:
        if len(raw) > self.config.max_message_bytes:
            return self._silent(f"message of {len(raw)} bytes exceeds max_message_bytes")
        try:
            signed = self.verifier.verify_message(raw)
        except VerificationError as exc:
            return self._silent(f"not verified: {exc.reason}")
        found = await self.directory.find_by_fingerprint(signed.fingerprint)
        if len(found) != 1:
            what = "no account" if not found else f"{len(found)} accounts"
            return self._silent(f"key {signed.fingerprint} belongs to {what}")
        account = found[0]
        if account.status is AccountStatus.DELETED or not account.mail:
            return self._silent(f"account {account.uid} is deleted or has no address")
        try:
            claim = self.replay.claim(
                signed.signed_bytes, signed.signed_at, signed.fingerprint, now=self.clock()
            )
        except Replayed as exc:
            return self._reply(account, False, f"{function.value} refused", str(exc) + "\n")
        if claim.undelivered is not None:
            return self._resend(account, claim, claim.undelivered)
        try:
            # The account holder, proven by their key, makes these changes (audit log).
            with acting(Actor(name=f"user:{account.uid}", source="mail")):
                return await self._act(function, account, signed, claim)
        except BaseException:
            # Nothing was stored for this message (a committed claim is not
            # released): the MTA's retry must be processed as new, not refused.
            try:
                self.replay.release(claim)
            except DirectoryUnavailable as exc:
                log.warning("could not release the replay claim (retried after a lease): %s", exc)
            raise

    async def _act(
        self, function: Function, account: Account, signed: SignedText, claim: Claim
    ) -> Outcome:
        if account.status is not AccountStatus.ACTIVE:
            text = self._signed("The account is disabled.\n")
            what = f"{function.value} refused"
            return self._finish(claim, account, False, what, self._message(account, what, text))
        match function:
            case Function.PING:
                message = self._message(account, "ping", self._signed(public_record(account)))
                return self._finish(claim, account, True, "ping", message)
            case Function.CHPASSWD:
                return await self._chpasswd(account, signed, claim)
            case Function.CHANGE:
                return await self._change(account, signed, claim)

    # ------------------------------------------------------------------ functions

    async def _chpasswd(self, account: Account, signed: SignedText, claim: Claim) -> Outcome:
        # The whole signed text must be the phrase: quoting it in any other
        # signed mail (as the original gateway allowed) must not reset a password.
        if " ".join(signed.text.split()) != " ".join(self.config.chpasswd_phrase.split()):
            return self._refuse(
                claim,
                account,
                "chpasswd refused",
                "The signed text must be exactly the configured phrase, and nothing else.\n",
            )
        # Encrypt first: a key that cannot receive mail (no encryption subkey,
        # expired one) must not leave the account with a password nobody knows.
        password = generate_password()
        text = (
            f"The new mail password of {account.uid} is:\n\n"
            f"    {password.decode()}\n\n"
            "It replaces the old one now (unless another mail from this gateway\n"
            "says that it could not be stored).\n"
        )
        fingerprint = account.pgp_fingerprint or signed.fingerprint
        try:
            body = self.verifier.encrypt(text, fingerprint, sign_with=self.config.signing_key)
        except VerificationError as exc:
            return self._refuse(
                claim, account, "chpasswd refused", f"Nothing was changed: {exc.reason}\n"
            )
        # Hand the reply over *before* storing the password: a password whose mail
        # never left (MTA down) would lock the owner out. MailUnsent propagates,
        # the claim is released, nothing was stored, and the MTA's retry starts over.
        message = self._message(account, "chpasswd", body)
        self._send(account, True, "chpasswd", message)
        try:
            await self.admin.set_password(account.uid, password)
        except AccountError as exc:
            # Final (the account vanished meanwhile, or the store refuses the
            # value): say so, and never act on this message again.
            notice = self._not_stored(
                account,
                message,
                f"was NOT stored: {exc}.\nYour old password still works.\n",
            )
            return self._finish(claim, account, False, "chpasswd failed", notice)
        except Exception:
            # Temporary (directory down). The mail already sent holds a password
            # that may not work: tell the owner, then exit 75 (the claim is
            # released) so that the retry makes and mails a new one.
            try:
                notice = self._not_stored(
                    account,
                    message,
                    "could not be stored (a temporary failure). Keep using your old\n"
                    "password: the gateway tries again later and then mails you a new\n"
                    "one. Only the newest password mail counts.\n",
                )
                self._send(account, False, "chpasswd not stored", notice)
            except (MailUnsent, VerificationError) as exc:
                log.warning("could not send the not-stored notice to %s: %s", account.uid, exc)
            raise
        self.replay.commit(claim, reply=None, now=self.clock())
        if not notify_daemon(self.control_socket, list(account.logins())):
            log.warning(
                "could not tell a daemon to flush %s (none running, or %s not reachable)",
                account.uid,
                self.control_socket or "no control_socket",
            )
        return Outcome(accepted=True, detail="chpasswd", uid=account.uid, reply=message)

    def _not_stored(self, account: Account, sent: EmailMessage, why: str) -> EmailMessage:
        """The notice that the password mailed in ``sent`` was not (surely) stored."""
        text = f"The new password mailed to you in {sent['Message-ID']}\n{why}"
        notice = self._message(account, "chpasswd not stored", self._signed(text))
        notice["In-Reply-To"] = str(sent["Message-ID"])
        notice["References"] = str(sent["Message-ID"])
        return notice

    async def _change(self, account: Account, signed: SignedText, claim: Claim) -> Outcome:
        owners = await self._dns_owners() if self.config.dns_zone else {}
        policy = ChangePolicy.from_config(self.config)
        results: list[ChangeResult] = []

        def change(current: Account) -> Account:
            # Run on the account as read inside AccountAdmin.apply, so the stored
            # result is computed from the current record; one replace stores it.
            result = process_change(signed.text, current, policy, owners.get)
            results.append(result)
            return result.account

        try:
            await self.admin.apply(account.uid, change)
        except AccountError as exc:
            # The account vanished, or the result breaks a directory rule: nothing stored.
            return self._refuse(claim, account, "change refused", f"Nothing was changed: {exc}\n")
        result = results[-1]
        attachment = None
        report = result.report_text()
        if result.show:
            current = await self.directory.get(account.uid) or result.account
            fingerprint = account.pgp_fingerprint or signed.fingerprint
            try:
                attachment = (
                    "record.asc",
                    self.verifier.encrypt(
                        public_record(current), fingerprint, sign_with=self.config.signing_key
                    ),
                )
            except VerificationError as exc:
                report += f"The record could not be attached: {exc.reason}\n"
        body = self._signed(report)
        message = self._message(account, "change", body, attachment=attachment)
        log.info("change for %s: applied %d line(s)", account.uid, len(result.applied))
        return self._finish(claim, account, True, "change", message)

    async def _dns_owners(self) -> dict[str, str]:
        """DNS name (lower case) -> uid of its owner, over every account."""
        owners: dict[str, str] = {}
        async for uid in self.directory.iterate():
            other = await self.directory.get(uid)
            if other is None:
                continue
            for record in other.dns_records:
                name = record.split(None, 1)[0].lower() if record.strip() else ""
                if name:
                    owners.setdefault(name, other.uid)
        return owners

    # ------------------------------------------------------------------ replies

    def _silent(self, detail: str) -> Outcome:
        log.warning("message refused without reply: %s", detail)
        return Outcome(accepted=False, detail=detail)

    def _signed(self, text: str) -> str:
        if not self.config.signing_key:
            return text
        return self.verifier.clearsign(text, self.config.signing_key)

    def _message(
        self,
        account: Account,
        what: str,
        body: str,
        *,
        attachment: tuple[str, str] | None = None,
    ) -> EmailMessage:
        return mail.build(
            self.config,
            to=account.mail or "",
            subject=f"mailgate {what}: {account.uid}",
            body=body,
            attachment=attachment,
        )

    def _reply(self, account: Account, accepted: bool, what: str, text: str) -> Outcome:
        return self._send(account, accepted, what, self._message(account, what, self._signed(text)))

    def _refuse(self, claim: Claim, account: Account, what: str, text: str) -> Outcome:
        return self._finish(
            claim, account, False, what, self._message(account, what, self._signed(text))
        )

    def _finish(
        self, claim: Claim, account: Account, accepted: bool, what: str, message: EmailMessage
    ) -> Outcome:
        """Mark the message processed, with its reply, then hand the reply over.

        The reply is stored with the commit: if the MTA does not take it now, the
        retry sends it again (see :meth:`_resend`) instead of acting twice.
        """
        self.replay.commit(claim, reply=message.as_bytes(), now=self.clock())
        outcome = self._send(account, accepted, what, message)
        self.replay.delivered(claim)
        return outcome

    def _resend(self, account: Account, claim: Claim, stored: bytes) -> Outcome:
        message = email.message_from_bytes(stored, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.send(message)
        self.replay.delivered(claim)
        log.info("reply for %s resent (processed before, the MTA had not taken it)", account.uid)
        return Outcome(accepted=True, detail="reply resent", uid=account.uid, reply=message)

    def _send(self, account: Account, accepted: bool, what: str, message: EmailMessage) -> Outcome:
        self.send(message)
        log.info("%s for %s: reply sent to %s", what, account.uid, account.mail)
        return Outcome(accepted=accepted, detail=what, uid=account.uid, reply=message)
