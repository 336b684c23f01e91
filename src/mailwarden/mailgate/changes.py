"""The ``change`` command of the mail gateway as one pure function. No I/O, no asyncio.

Interface (called by ``mailgate.gateway`` after the signature was verified)::

    policy = ChangePolicy.from_config(config.mailgate)
    result = process_change(signed_text, account, policy, dns_owner)
    # result.account  -> the Account to store (== account when nothing is to be applied)
    # result.changed  -> whether it differs from the input account
    # result.show     -> the message asked for ``show`` (send the record, encrypted)
    # result.halted   -> processing stopped at a malformed or unknown line
    # result.report_text() -> the report for the reply mail

``dns_owner(name)`` returns the uid of the account that holds a DNS entry for
the single label ``name`` (lower case), or ``None``; it is the only call out of
this module, and whatever it raises (``DirectoryUnavailable``) propagates
unchanged so the gateway can exit with the MTA's temporary-failure code.

The line model follows the original gateway (see docs/mailgate.md): every
non-empty line of the signed text is a command; a line starting with ``-- ``
(a mail signature) ends the commands. Each line is tried in this order:
``show``, position (``Lat: .. Long: ..``), DNS entry (``name in TYPE data``),
``field: value``, SSH key line, ``del FIELD``. The report has a block per
line: ``> <line>`` and then the action taken, e.g. ``Changed entry ircNick to
alice``, ``Removed entry ircNick``, ``Position set to ...``, ``SSH Keys replaced
with: <bits> <fingerprint> [<short form>]``, ``SSH Key added: ...``, ``DNS Entry
replaced with foo IN A 192.0.2.1``, ``DNS Entry added ...``. The first SSH key
line of a message replaces the stored keys and later ones add; the same holds
for DNS entries.

Two kinds of rejection. A *soft* one (a weak or blocklisted SSH key, too many
keys, a DNS name owned by another account, a zone-wide ``_`` name not in
``dns_underscore_names``, a CNAME mixed with other types, a
field that may not be deleted) is one report line and processing goes on. A
*halting* one (a line nobody understands, a malformed value, an unparsable key)
stops processing: with ``atomic = false`` (the seed's documented behaviour,
the default) the valid changes of the lines before it are kept; with ``atomic =
true`` nothing is. The report then lists every remaining line as ``Not
processed``, so it says exactly what was applied, what failed and why, and what
was never looked at.

Field names match case-insensitively; the seed's names (``c``, ``l``,
``facsimiletelephonenumber``, ``telephonenumber``, ``postaladdress``,
``postalcode``, ``loginshell``, ``emailforward``, ``ircnick``, ``onvacation``,
``labeledurl``), the LDAP spelling ``labeledURI``, the seed's misspelling
``labledurl`` and the Profile attribute names (``irc_nick``) all work.
``field:`` without a value never clears a field (``del`` does); the login shell
cannot be deleted. Each field has its own check (``accounts/profile.py``); every value is
bounded in length and may contain no control characters, line separators or
bidirectional overrides:

====================  =====================================================
``c``                 two letters (ISO 3166 shape), stored upper-case
``l``                 free text, at most 128
telephone, fax        ``+``, digits, spaces and ``( ) . / -``, at most 32
``postaladdress``     free text, at most 256 (``$`` separates lines, as in LDAP)
``postalcode``        letters, digits, spaces and ``-``, at most 16
``loginshell``        exactly one of ``[mailgate] login_shells``; never deleted
``emailforward``      a plain ``local@domain.tld``, not one of the account's own
                      addresses (that would loop)
``ircnick``           an RFC 2812 nickname, at most 32
``onvacation``        free text, at most 1024
``labeledURI``        an ``http(s)://`` URL, optionally a label after a space
====================  =====================================================

``del`` also takes ``latitude``, ``longitude``, ``position`` (both),
``sshRSAAuthKey`` (every key) and ``dnsZoneEntry`` (every DNS entry); a DNS
name may be written in full (``www.<zone>.``).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailwarden.accounts.dns import DnsRecord, is_zone_wide, looks_like_dns_line, parse_dns_line
from mailwarden.accounts.position import parse_position_line
from mailwarden.accounts.profile import (
    SEED_FIELDS,
    ChangePolicy,
    checked_value,
    deletable,
    field_named,
)
from mailwarden.accounts.sshkeys import key_refusal, looks_like_key_line, parse_key_line
from mailwarden.errors import FieldError
from mailwarden.model import Account, Profile

__all__ = [
    "SEED_FIELDS",
    "ChangePolicy",
    "ChangeResult",
    "LineResult",
    "LineStatus",
    "process_change",
]

# Lines echoed longer than this are shortened in the report (the text is the
# user's own, but a reply should not balloon with a pasted megabyte).
MAX_ECHO = 300


class LineStatus(enum.Enum):
    """What happened to one command line."""

    CHANGED = "changed"  # a change made (kept unless an atomic message halted)
    SHOW = "show"  # ``show``: the record is to be sent
    REFUSED = "refused"  # soft rejection: a report line, processing went on
    HALTED = "halted"  # this line stopped processing
    NOT_PROCESSED = "not_processed"  # after the halting line


@dataclass(frozen=True, slots=True, kw_only=True)
class LineResult:
    """One command line, its outcome and the report lines after ``> <line>``."""

    line: str
    status: LineStatus
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeResult:
    """The outcome of a ``change`` message.

    ``account`` is what to store: the input account when nothing is to be
    applied (no change, or an atomic message that halted). ``committed`` is
    false when an atomic message halted: then nothing of it is applied.
    """

    account: Account
    changed: bool
    show: bool
    halted: bool
    committed: bool
    lines: tuple[LineResult, ...]

    @property
    def applied(self) -> tuple[str, ...]:
        """The input lines whose change is in ``account``."""
        if not self.committed:
            return ()
        return tuple(r.line for r in self.lines if r.status is LineStatus.CHANGED)

    @property
    def report(self) -> tuple[str, ...]:
        """The report, one text line per item: ``> <line>`` then the actions."""
        out: list[str] = []
        for r in self.lines:
            echo = r.line if len(r.line) <= MAX_ECHO else r.line[:MAX_ECHO] + "..."
            out.append(f"> {echo}")
            out.extend(r.messages)
        if not self.lines:
            out.append("No commands found in the message.")
        return tuple(out)

    def report_text(self) -> str:
        """The report as text, lines ending in ``\\n``."""
        return "".join(line + "\n" for line in self.report)


_SSH_NAMES = {"sshrsaauthkey", "sshkeys", "ssh_keys", "sshkey"}
_DNS_NAMES = {"dnszoneentry", "dns", "dns_records", "dnsrecords"}
_POSITION_NAMES = {
    "latitude": ("latitude",),
    "longitude": ("longitude",),
    "position": ("latitude", "longitude"),
}

_FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z_-]*)\s*:(.*)$")
_DEL_LINE = re.compile(r"^del\s+(\S+)$", re.IGNORECASE)
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


# --------------------------------------------------------------------------- processing


class _Working:
    """The account as changed so far by one message."""

    def __init__(
        self, account: Account, policy: ChangePolicy, owner: Callable[[str], str | None]
    ) -> None:
        self.account = account
        self.policy = policy
        self.owner = owner
        self.profile = account.profile.as_dict()
        self.ssh_keys: list[str] = list(account.ssh_keys)
        self.ssh_fingerprints: list[str] = []
        self.dns: list[DnsRecord] = []
        self.dns_lines: list[str] = list(account.dns_records)
        self.seen_key = False
        self.seen_dns = False

    def result_account(self) -> Account:
        return dataclasses.replace(
            self.account,
            profile=Profile(**self.profile),
            ssh_keys=tuple(self.ssh_keys),
            dns_records=tuple(self.dns_lines),
        )

    # Each handler returns None when the line is not its kind, else
    # (status, messages); it raises FieldError to halt.

    def position(self, line: str) -> tuple[LineStatus, tuple[str, ...]] | None:
        pos = parse_position_line(line)
        if pos is None:
            return None
        self.profile["latitude"] = pos.latitude
        self.profile["longitude"] = pos.longitude
        return LineStatus.CHANGED, (pos.describe(),)

    def dns_entry(self, line: str) -> tuple[LineStatus, tuple[str, ...]] | None:
        if not looks_like_dns_line(line):
            return None
        if not self.policy.dns_zone:
            raise FieldError("DNS entries are not accepted by this gateway (no zone)")
        rec = parse_dns_line(self._relative(line))
        if is_zone_wide(rec.name) and rec.name not in self.policy.dns_underscore_names:
            return LineStatus.REFUSED, (
                f"DNS name {rec.name} is refused: names starting with _ (such as"
                " _acme-challenge, _dmarc, _domainkey) act for the whole zone",
            )
        owner = self.owner(rec.name)
        if owner is not None and owner != self.account.uid:
            return LineStatus.REFUSED, (
                f"DNS entry {rec.name} is already owned by another account",
            )
        current = self.dns if self.seen_dns else []
        if any(r.name == rec.name and "CNAME" in (r.type, rec.type) for r in current):
            return LineStatus.REFUSED, (f"CNAME and other RR types not allowed: {line}",)
        if rec in current:
            return LineStatus.REFUSED, (f"DNS entry {rec.zone_line()} is already in this message",)
        if len(current) >= self.policy.max_dns_records:
            return LineStatus.REFUSED, (
                f"DNS entry not added: at most {self.policy.max_dns_records} entries",
            )
        if not self.seen_dns:
            self.seen_dns = True
            self.dns = [rec]
            self.dns_lines = [rec.zone_line()]
            return LineStatus.CHANGED, (f"DNS Entry replaced with {rec.zone_line()}",)
        self.dns.append(rec)
        self.dns_lines.append(rec.zone_line())
        return LineStatus.CHANGED, (f"DNS Entry added {rec.zone_line()}",)

    def _relative(self, line: str) -> str:
        """``foo.<zone>[.] in a ...`` -> ``foo in a ...``: names may be written in full."""
        name, sep, rest = re.split(r"(\s+)", line, maxsplit=1)
        zone = self.policy.dns_zone.strip(".").lower()
        for suffix in (f".{zone}.", f".{zone}"):
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)] + sep + rest
        return line

    def field_change(self, line: str) -> tuple[LineStatus, tuple[str, ...]] | None:
        m = _FIELD_LINE.match(line)
        if m is None:
            return None
        spec = field_named(m.group(1))
        if spec is None:
            return None
        value = checked_value(spec, m.group(2).strip(), self.account, self.policy)
        self.profile[spec.attr] = value
        return LineStatus.CHANGED, (f"Changed entry {spec.canonical} to {value}",)

    def ssh_key(self, line: str) -> tuple[LineStatus, tuple[str, ...]] | None:
        if not looks_like_key_line(line):
            return None
        key = parse_key_line(line)
        refusal = key_refusal(key, blocklist=self.policy.ssh_key_blocklist)
        if refusal is not None:
            return LineStatus.REFUSED, (refusal,)
        if key.fingerprint in self.ssh_fingerprints:
            return LineStatus.REFUSED, (
                f"SSH key {key.fingerprint} is already in this message, not added again",
            )
        if not self.seen_key:
            self.seen_key = True
            self.ssh_keys = [key.line()]
            self.ssh_fingerprints = [key.fingerprint]
            return LineStatus.CHANGED, (f"SSH Keys replaced with: {key.describe()}",)
        if len(self.ssh_keys) >= self.policy.max_ssh_keys:
            return LineStatus.REFUSED, (
                f"SSH key not added: at most {self.policy.max_ssh_keys} keys per account",
            )
        self.ssh_keys.append(key.line())
        self.ssh_fingerprints.append(key.fingerprint)
        return LineStatus.CHANGED, (f"SSH Key added: {key.describe()}",)

    def delete(self, line: str) -> tuple[LineStatus, tuple[str, ...]] | None:
        m = _DEL_LINE.match(line)
        if m is None:
            return None
        name = m.group(1).lower()
        spec = field_named(name)
        if spec is not None and spec.seed in self.policy.fields and deletable(spec):
            self.profile.pop(spec.attr, None)
            return LineStatus.CHANGED, (f"Removed entry {spec.canonical}",)
        if name in _POSITION_NAMES:
            for attr in _POSITION_NAMES[name]:
                self.profile.pop(attr, None)
            return LineStatus.CHANGED, (f"Removed entry {name}",)
        if name in _SSH_NAMES:
            self.ssh_keys, self.ssh_fingerprints, self.seen_key = [], [], True
            return LineStatus.CHANGED, ("Removed entry sshRSAAuthKey",)
        if name in _DNS_NAMES:
            self.dns, self.dns_lines, self.seen_dns = [], [], True
            return LineStatus.CHANGED, ("Removed entry dnsZoneEntry",)
        return LineStatus.REFUSED, (f"Cannot erase entry {name[:64]}",)


def _commands(text: str) -> Iterable[str]:
    """The command lines: stripped, non-empty, up to a ``-- `` signature line."""
    for raw in _LINE_SPLIT.split(text):
        if raw.startswith("-- ") or raw.rstrip() == "--":
            return
        line = raw.strip()
        if line:
            yield line


def process_change(
    text: str,
    account: Account,
    policy: ChangePolicy,
    dns_owner: Callable[[str], str | None],
) -> ChangeResult:
    """Run every command of a signed ``change`` text against ``account``.

    Never raises for anything in ``text``; only what ``dns_owner`` raises
    propagates. See the module docstring for the rules.
    """
    work = _Working(account, policy, dns_owner)
    handlers = (work.position, work.dns_entry, work.field_change, work.ssh_key, work.delete)
    results: list[LineResult] = []
    show = False
    halted = False
    suffix = (
        "Halted - no changes committed"
        if policy.atomic
        else "Halted - the changes above this line were applied"
    )
    lines = list(_commands(text))
    for index, line in enumerate(lines):
        if halted:
            # Reported one by one so the sender sees which lines were never looked at.
            results.append(
                LineResult(line=line, status=LineStatus.NOT_PROCESSED, messages=("Not processed",))
            )
            continue
        if index >= policy.max_lines:
            halted = True
            results.append(
                LineResult(
                    line=line,
                    status=LineStatus.HALTED,
                    messages=(f"==> at most {policy.max_lines} commands per message", suffix),
                )
            )
            continue
        if line.lower() == "show":
            show = True
            results.append(LineResult(line=line, status=LineStatus.SHOW, messages=("OK",)))
            continue
        outcome: tuple[LineStatus, tuple[str, ...]] | None = None
        try:
            for handler in handlers:
                outcome = handler(line)
                if outcome is not None:
                    break
        except FieldError as exc:
            halted = True
            results.append(
                LineResult(line=line, status=LineStatus.HALTED, messages=(f"==> {exc}", suffix))
            )
            continue
        if outcome is None:
            halted = True
            results.append(
                LineResult(
                    line=line,
                    status=LineStatus.HALTED,
                    messages=(f"Command is not understood. {suffix}",),
                )
            )
            continue
        results.append(LineResult(line=line, status=outcome[0], messages=outcome[1]))
    committed = not (halted and policy.atomic)
    new = work.result_account() if committed else account
    return ChangeResult(
        account=new,
        changed=new != account,
        show=show,
        halted=halted,
        committed=committed,
        lines=tuple(results),
    )
