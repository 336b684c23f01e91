"""The rules of the profile fields a user changes themselves. Pure.

One set of rules for both ways in: the mail gateway's ``change`` lines
(``mailgate.changes`` turns each ``field: value`` / ``del field`` line into a
call here) and the web page's profile form (frontends/web/), which hands over
the whole set of edits as one :func:`edit_profile` call, not as text commands.

Interface::

    spec = field_named("ircNick")               # ProfileField | None (any spelling)
    value = checked_value(spec, value, account, policy)   # raises FieldError
    profile = edit_profile(account, {"ircnick": "al", "l": None}, policy)
                                                # None deletes; raises FieldError

Field names match case-insensitively; the seed's names (``c``, ``l``,
``facsimiletelephonenumber``, ...), the LDAP spelling ``labeledURI``, the
seed's misspelling ``labledurl`` and the Profile attribute names
(``irc_nick``) all work. Every value is bounded in length and may contain no
control characters, line separators or bidirectional overrides; each field has
its own check (the table in ``mailgate/changes.py``'s docstring, docs/mailgate.md).
The login shell cannot be deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailwarden.config.web import MAILGATE_FIELDS
from mailwarden.errors import FieldError
from mailwarden.model import Account, Profile

if TYPE_CHECKING:
    from mailwarden.config import MailgateConfig

#: Every profile field's seed name, in the seed's order (``[mailgate] fields``'s default).
SEED_FIELDS: tuple[str, ...] = MAILGATE_FIELDS


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


# Line and paragraph separators and the bidirectional overrides (which can make
# a report line read differently from what is stored) count as control characters.
_INVISIBLE = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_control(value: str, name: str, longest: int) -> str:
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c in _INVISIBLE for c in value):
        raise FieldError(f"{name}: control characters are not allowed")
    if len(value) > longest:
        raise FieldError(f"{name}: at most {longest} characters")
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
        raise FieldError("c: a two-letter ISO 3166 country code, e.g. DE")
    return value.upper()


def _phone(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _PHONE.match(value):
        raise FieldError("telephone numbers: digits, spaces and + ( ) . / - (e.g. +49 30 1234)")
    return value


def _postal_code(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _POSTAL_CODE.match(value):
        raise FieldError("postalCode: letters, digits, spaces and -, at most 16")
    return value


def _shell(value: str, account: Account, policy: ChangePolicy) -> str:
    if value not in policy.login_shells:
        raise FieldError(f"loginShell: one of {', '.join(policy.login_shells) or '(none)'}")
    return value


def _forward(value: str, account: Account, policy: ChangePolicy) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise FieldError("emailForward: a plain address local@domain.example")
    own = {name.lower() for name in account.logins()}
    if value.lower() in own:
        raise FieldError("emailForward: forwarding to the account itself would loop")
    return value


def _irc(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _IRC.match(value):
        raise FieldError("ircNick: an IRC nickname (letters, digits, [ ] \\ ` _ ^ { | } -)")
    return value


def _uri(value: str, account: Account, policy: ChangePolicy) -> str:
    if not _URI.match(value):
        raise FieldError("labeledURI: an http:// or https:// URL, optionally a label after it")
    return value


@dataclass(frozen=True, slots=True)
class ProfileField:
    """One profile field and its rule (the table in the module docstring)."""

    seed: str  # the config / seed name
    attr: str  # the Profile attribute
    canonical: str  # the name in reports (LDAP spelling)
    check: Validator
    longest: int
    aliases: tuple[str, ...] = field(default=())


_FIELDS: tuple[ProfileField, ...] = (
    ProfileField("c", "c", "c", _country, 64),
    ProfileField("l", "l", "l", _text, 128),
    ProfileField(
        "facsimiletelephonenumber",
        "facsimile_telephone_number",
        "facsimileTelephoneNumber",
        _phone,
        32,
    ),
    ProfileField("telephonenumber", "telephone_number", "telephoneNumber", _phone, 32),
    ProfileField("postaladdress", "postal_address", "postalAddress", _text, 256),
    ProfileField("postalcode", "postal_code", "postalCode", _postal_code, 16),
    ProfileField("loginshell", "login_shell", "loginShell", _shell, 256),
    ProfileField("emailforward", "email_forward", "emailForward", _forward, 254),
    ProfileField("ircnick", "irc_nick", "ircNick", _irc, 32),
    ProfileField("onvacation", "on_vacation", "onVacation", _text, 1024),
    ProfileField(
        "labeledurl", "labeled_uri", "labeledURI", _uri, 512, aliases=("labeleduri", "labledurl")
    ),
)
_BY_NAME: dict[str, ProfileField] = {}
for _f in _FIELDS:
    for _name in (_f.seed, _f.attr, _f.canonical.lower(), *_f.aliases):
        _BY_NAME[_name.lower()] = _f
_UNDELETABLE = {"loginshell"}


def field_named(name: str) -> ProfileField | None:
    """The field any of whose spellings is ``name`` (case-insensitive), or None."""
    return _BY_NAME.get(name.lower())


def deletable(spec: ProfileField) -> bool:
    """Whether the field may be removed (the login shell may not: accounts need one)."""
    return spec.seed not in _UNDELETABLE


def checked_value(spec: ProfileField, value: str, account: Account, policy: ChangePolicy) -> str:
    """``value`` as stored for ``spec``; FieldError saying why it is refused.

    A field outside ``policy.fields`` may not be changed at all; an empty value
    never clears a field (deleting is a separate, explicit edit).
    """
    if spec.seed not in policy.fields:
        raise FieldError(f"{spec.canonical} cannot be changed through this gateway")
    if not value:
        raise FieldError(
            f"{spec.canonical}: a value is needed (to remove it, send 'del {spec.seed}')"
        )
    _no_control(value, spec.canonical, spec.longest)
    return spec.check(value, account, policy)


def edit_profile(
    account: Account, edits: Mapping[str, str | None], policy: ChangePolicy
) -> Profile:
    """The account's profile with ``edits`` applied, all or nothing.

    ``edits`` maps a field name (any spelling) to its new value, or to None to
    remove it. Raises FieldError for the first edit that breaks a rule: an
    unknown field, one the policy does not offer, a malformed value, or the
    removal of a field that may not be removed.
    """
    profile = account.profile.as_dict()
    for name, value in edits.items():
        spec = field_named(name)
        if spec is None or spec.seed not in policy.fields:
            raise FieldError(f"{name[:64]} cannot be changed through this gateway")
        if value is None:
            if not deletable(spec):
                raise FieldError(f"Cannot erase entry {spec.seed}")
            profile.pop(spec.attr, None)
        else:
            profile[spec.attr] = checked_value(spec, value, account, policy)
    return Profile(**profile)
