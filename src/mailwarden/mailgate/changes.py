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
cannot be deleted. Each field has its own check (``_FIELDS``); every value is
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailwarden.config.web import MAILGATE_FIELDS
from mailwarden.mailgate.dns import DnsRecord, is_zone_wide, looks_like_dns_line, parse_dns_line
from mailwarden.mailgate.errors import MailgateError
from mailwarden.mailgate.position import parse_position_line
from mailwarden.mailgate.sshkeys import key_refusal, looks_like_key_line, parse_key_line
from mailwarden.model import Account, Profile

if TYPE_CHECKING:
    from mailwarden.config import MailgateConfig

__all__ = [
    "SEED_FIELDS",
    "ChangePolicy",
    "ChangeResult",
    "LineResult",
    "LineStatus",
    "process_change",
]

# The seed fields a change may set: the one list is the config's default
# (mailgate.fields), which a site may shorten.
SEED_FIELDS: tuple[str, ...] = MAILGATE_FIELDS
# Lines echoed longer than this are shortened in the report (the text is the
# user's own, but a reply should not balloon with a pasted megabyte).
MAX_ECHO = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePolicy:
    """What a ``change`` message may do; built from ``[mailgate]`` by the gateway.

    ``fields`` are seed field names (lower case, see SEED_FIELDS) that may be
    set; ``login_shells`` the only values ``loginshell`` accepts; ``dns_zone``
    empty means DNS lines are not accepted at all; ``ssh_key_blocklist`` holds
    ``SHA256:...`` fingerprints; ``dns_underscore_names`` the zone-wide names
    (lower case, starting with ``_``) that DNS lines may nevertheless set.
    """

    fields: tuple[str, ...] = SEED_FIELDS
    login_shells: tuple[str, ...] = ("/bin/sh", "/bin/bash")
    dns_zone: str = ""
    max_ssh_keys: int = 20
    ssh_key_blocklist: frozenset[str] = frozenset()
    max_dns_records: int = 50
    atomic: bool = False
    max_lines: int = 500
    dns_underscore_names: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: MailgateConfig) -> ChangePolicy:
        """The policy of a ``[mailgate]`` config section."""
        return cls(
            fields=tuple(f.lower() for f in cfg.fields),
            login_shells=tuple(cfg.login_shells),
            dns_zone=cfg.dns_zone,
            max_ssh_keys=cfg.max_ssh_keys,
            ssh_key_blocklist=frozenset(cfg.ssh_key_blocklist),
            atomic=cfg.atomic,
            dns_underscore_names=frozenset(n.lower() for n in cfg.dns_underscore_names),
        )


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


# --------------------------------------------------------------------------- fields


# Line and paragraph separators and the bidirectional overrides (which can make
# a report line read differently from what is stored) count as control characters.
_INVISIBLE = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_control(value: str, name: str, longest: int) -> str:
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c in _INVISIBLE for c in value):
        raise MailgateError(f"{name}: control characters are not allowed")
    if len(value) > longest:
        raise MailgateError(f"{name}: at most {longest} characters")
    return value


_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,31}$")
_POSTAL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,15}$")
_IRC = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,31}$")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_URI = re.compile(r"^https?://[^\s/?#]+[^\s]*(?: .+)?$", re.IGNORECASE)

Validator = Callable[[str, Account, ChangePolicy], str]


def _text(value: str, account: Account, policy: ChangePolicy) -> str:
    """Free text: only the common length and control-character checks apply."""
    return value


def _country(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _COUNTRY.match(value):
        raise MailgateError("c: a two-letter ISO 3166 country code, e.g. DE")
    return value.upper()


def _phone(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _PHONE.match(value):
        raise MailgateError("telephone numbers: digits, spaces and + ( ) . / - (e.g. +49 30 1234)")
    return value


def _postal_code(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _POSTAL_CODE.match(value):
        raise MailgateError("postalCode: letters, digits, spaces and -, at most 16")
    return value


def _shell(value: str, account: Account, policy: ChangePolicy) -> str:
    if value not in policy.login_shells:
        raise MailgateError(f"loginShell: one of {', '.join(policy.login_shells) or '(none)'}")
    return value


def _forward(value: str, account: Account, policy: ChangePolicy) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise MailgateError("emailForward: a plain address local@domain.example")
    own = {name.lower() for name in account.logins()}
    if value.lower() in own:
        raise MailgateError("emailForward: forwarding to the account itself would loop")
    return value


def _irc(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _IRC.match(value):
        raise MailgateError("ircNick: an IRC nickname (letters, digits, [ ] \\ ` _ ^ { | } -)")
    return value


def _uri(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _URI.match(value):
        raise MailgateError("labeledURI: an http:// or https:// URL, optionally a label after it")
    return value


@dataclass(frozen=True, slots=True)
class _Field:
    seed: str  # the config / seed name
    attr: str  # the Profile attribute
    canonical: str  # the name in reports (LDAP spelling)
    check: Validator
    longest: int
    aliases: tuple[str, ...] = field(default=())


_FIELDS: tuple[_Field, ...] = (
    _Field("c", "c", "c", _country, 64),
    _Field("l", "l", "l", _text, 128),
    _Field(
        "facsimiletelephonenumber",
        "facsimile_telephone_number",
        "facsimileTelephoneNumber",
        _phone,
        32,
    ),
    _Field("telephonenumber", "telephone_number", "telephoneNumber", _phone, 32),
    _Field("postaladdress", "postal_address", "postalAddress", _text, 256),
    _Field("postalcode", "postal_code", "postalCode", _postal_code, 16),
    _Field("loginshell", "login_shell", "loginShell", _shell, 256),
    _Field("emailforward", "email_forward", "emailForward", _forward, 254),
    _Field("ircnick", "irc_nick", "ircNick", _irc, 32),
    _Field("onvacation", "on_vacation", "onVacation", _text, 1024),
    _Field(
        "labeledurl", "labeled_uri", "labeledURI", _uri, 512, aliases=("labeleduri", "labledurl")
    ),
)
_BY_NAME: dict[str, _Field] = {}
for _f in _FIELDS:
    for _name in (_f.seed, _f.attr, _f.canonical.lower(), *_f.aliases):
        _BY_NAME[_name.lower()] = _f
_UNDELETABLE = {"loginshell"}
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
    # (status, messages); it raises MailgateError to halt.

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
            raise MailgateError("DNS entries are not accepted by this gateway (no zone)")
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
        spec = _BY_NAME.get(m.group(1).lower())
        if spec is None:
            return None
        if spec.seed not in self.policy.fields:
            raise MailgateError(f"{spec.canonical} cannot be changed through this gateway")
        value = m.group(2).strip()
        if not value:
            raise MailgateError(
                f"{spec.canonical}: a value is needed (to remove it, send 'del {spec.seed}')"
            )
        _no_control(value, spec.canonical, spec.longest)
        value = spec.check(value, self.account, self.policy)
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
        spec = _BY_NAME.get(name)
        if spec is not None and spec.seed in self.policy.fields and spec.seed not in _UNDELETABLE:
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
        except MailgateError as exc:
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
