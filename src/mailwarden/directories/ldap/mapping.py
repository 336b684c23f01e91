"""Accounts to LDAP entries and back: the default attribute names (qmail-ldap schema
plus mailwarden's auxiliary class) and :class:`LdapMapping`. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]
from mailwarden.accounts.rules import app_password_to_json, check_account
from mailwarden.config import LdapConfig
from mailwarden.errors import (
    InvalidAccount,
)
from mailwarden.model import PROFILE_FIELDS, Account, AccountStatus, AppPassword, LastUse, Profile

Entry = dict[str, list[bytes]]

# Logical field -> LDAP attribute, the qmail-ldap schema plus mailwarden's
# auxiliary class. ``[ldap] attributes`` overrides single names.
DEFAULT_ATTRIBUTES: Mapping[str, str] = MappingProxyType(
    {
        "uid": "uid",
        "mail": "mail",
        "alternate": "mailAlternateAddress",
        "password": "userPassword",
        "status": "accountStatus",
        "mail_host": "mailHost",
        "home": "homeDirectory",
        "mail_location": "mailMessageStore",
        "uid_number": "qmailUID",
        "gid_number": "qmailGID",
        "quota_bytes": "mailQuotaSize",
        "quota_messages": "mailQuotaCount",
        "services": "mailwardenService",
        "master": "mailwardenMaster",
        "allow_nets": "mailwardenAllowNet",
        "passdb_fields": "mailwardenPassdbField",
        "userdb_fields": "mailwardenUserdbField",
        "pgp_fingerprint": "mailwardenPGPFingerprint",
        "ssh_keys": "mailwardenSSHKey",
        "dns_records": "mailwardenDNSEntry",
        "app_passwords": "mailwardenAppPassword",
        "app_passwords_only": "mailwardenAppPasswordsOnly",
        "name": "mailwardenName",
        "c": "c",
        "l": "l",
        "telephone_number": "telephoneNumber",
        "facsimile_telephone_number": "facsimileTelephoneNumber",
        "postal_address": "postalAddress",
        "postal_code": "postalCode",
        "login_shell": "loginShell",
        "email_forward": "mailwardenEmailForward",
        "irc_nick": "mailwardenIrcNick",
        "on_vacation": "mailwardenOnVacation",
        "labeled_uri": "labeledURI",
        "latitude": "mailwardenLatitude",
        "longitude": "mailwardenLongitude",
    }
)

TEXT_FIELDS = ("mail_host", "home", "mail_location", "pgp_fingerprint")
INT_FIELDS = ("uid_number", "gid_number", "quota_bytes", "quota_messages")
LIST_FIELDS = ("allow_nets", "ssh_keys", "dns_records")
FIELD_MAPS = ("passdb_fields", "userdb_fields")

# qmail-ldap's accountStatus values (qmail-ldap QLDAPINSTALL): "nopop" and
# "noaccess" keep mail flowing but refuse the mailbox services; here they are
# per-service switches on an active account.
QMAIL_SERVICE_STATUS: Mapping[str, Mapping[str, bool]] = MappingProxyType(
    {
        "nopop": MappingProxyType({"pop3": False}),
        "noaccess": MappingProxyType({"pop3": False, "imap": False}),
    }
)


def encode_utf8(text: str) -> bytes:
    return text.encode("utf-8")


def decode_utf8(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class LdapMapping:
    """Accounts to LDAP entries and back, by ``[ldap]``'s attribute mapping.

    No I/O: the directory uses it, and so do ``mailwarden import/export ldif``.
    """

    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        self.attrs: Mapping[str, str] = MappingProxyType(
            {**DEFAULT_ATTRIBUTES, **config.attributes}
        )

    def entry_of(self, account: Account, base_dn: str) -> tuple[str, dict[str, list[bytes]]]:
        """``(dn, attributes)`` of ``account`` as an LDIF record; InvalidAccount."""
        values = {k: v for k, v in self._values(account).items() if v}
        dn = f"{self.attrs['uid']}={ldap.dn.escape_dn_chars(account.uid)},{base_dn}"
        return dn, {"objectClass": self._object_classes(account), **values}

    def account_of(self, attributes: Mapping[str, list[bytes]]) -> Account | None:
        """The account an LDIF record describes; None if it has no uid (not an account)."""
        entry = {k.lower(): list(v) for k, v in attributes.items()}
        if not entry.get(self.attrs["uid"].lower()):
            return None
        return self._account(entry)

    def _first(self, entry: Entry, field: str) -> str | None:
        values = entry.get(self.attrs[field].lower())
        return decode_utf8(values[0]) if values else None

    def _all(self, entry: Entry, field: str) -> list[str]:
        return [decode_utf8(v) for v in entry.get(self.attrs[field].lower(), [])]

    def _account(self, entry: Entry) -> Account:
        c = self.config
        uid = self._first(entry, "uid") or ""
        services: dict[str, bool] = {}
        raw_status = (self._first(entry, "status") or "active").lower()
        services.update(QMAIL_SERVICE_STATUS.get(raw_status, {}))
        try:
            status = AccountStatus(raw_status)
        except ValueError:
            # nopop/noaccess are active accounts with services off; anything unknown
            # is refused rather than guessed to be active.
            status = (
                AccountStatus.ACTIVE
                if raw_status in QMAIL_SERVICE_STATUS
                else AccountStatus.DISABLED
            )
        for switch in self._all(entry, "services"):
            name, _, value = switch.partition("=")
            services[name.strip().lower()] = value.strip().lower() in ("on", "yes", "true", "1")
        numbers: dict[str, int | None] = {}
        defaults = {
            "uid_number": c.default_uid_number,
            "gid_number": c.default_gid_number,
            "quota_bytes": c.default_quota_bytes,
            "quota_messages": c.default_quota_messages,
        }
        for name in INT_FIELDS:
            text = self._first(entry, name)
            try:
                numbers[name] = int(text) if text is not None else (defaults[name] or None)
            except ValueError:
                numbers[name] = defaults[name] or None
        profile = Profile(**{n: self._first(entry, n) for n in PROFILE_FIELDS})
        mail_location = self._first(entry, "mail_location") or c.default_mail_location or None
        return Account(
            uid=uid,
            mail=self._first(entry, "mail"),
            alternate_addresses=tuple(self._all(entry, "alternate")),
            password=self._first(entry, "password") or "",
            status=status,
            services=MappingProxyType(services),
            mail_host=self._first(entry, "mail_host"),
            home=self._first(entry, "home"),
            mail_location=mail_location,
            master=(self._first(entry, "master") or "").upper() == "TRUE",
            allow_nets=tuple(self._all(entry, "allow_nets")),
            passdb_fields=MappingProxyType(field_map(self._all(entry, "passdb_fields"))),
            userdb_fields=MappingProxyType(field_map(self._all(entry, "userdb_fields"))),
            pgp_fingerprint=self._first(entry, "pgp_fingerprint"),
            ssh_keys=tuple(self._all(entry, "ssh_keys")),
            dns_records=tuple(self._all(entry, "dns_records")),
            profile=profile,
            app_passwords=self._app_passwords(entry),
            app_passwords_only=(self._first(entry, "app_passwords_only") or "").upper() == "TRUE",
            **numbers,
        )

    def _app_passwords(self, entry: Entry) -> tuple[AppPassword, ...]:
        if not entry.get(self.attrs["app_passwords"].lower()):
            return ()
        apps = [app_password_of(v) for v in self._all(entry, "app_passwords")]
        return tuple(sorted((a for a in apps if a is not None), key=lambda a: a.order))

    def _values(self, account: Account) -> dict[str, list[bytes]]:
        """Every mapped attribute of ``account``: an empty list means "absent"."""
        check_account(account)
        for address in (account.mail, *account.alternate_addresses):
            if address is not None and not address.isascii():
                raise InvalidAccount(
                    f"address {address!r}: LDAP mail attributes hold ASCII (IA5) only"
                )
        a = self.attrs
        out: dict[str, list[bytes]] = {}

        def put(field: str, values: Iterable[str]) -> None:
            out[a[field]] = [encode_utf8(v) for v in values]

        put("uid", [account.uid])
        put("mail", [account.mail] if account.mail else [])
        put("alternate", account.alternate_addresses)
        put("password", [account.password] if account.password else [])
        put("status", [account.status.value])
        for name in TEXT_FIELDS:
            value = getattr(account, name)
            put(name, [value] if value is not None else [])
        for name in INT_FIELDS:
            number = getattr(account, name)
            put(name, [str(number)] if number is not None else [])
        put(
            "services",
            [f"{k}={'on' if v else 'off'}" for k, v in sorted(account.services.items())],
        )
        put("master", ["TRUE"] if account.master else [])
        put("app_passwords", sorted(app_password_value(app) for app in account.app_passwords))
        put("app_passwords_only", ["TRUE"] if account.app_passwords_only else [])
        for name in LIST_FIELDS:
            put(name, getattr(account, name))
        for name in FIELD_MAPS:
            put(name, [f"{k}={v}" for k, v in getattr(account, name).items()])
        profile = account.profile.as_dict()
        for name in PROFILE_FIELDS:
            put(name, [profile[name]] if name in profile else [])
        return out

    def _object_classes(self, account: Account) -> list[bytes]:
        classes = list(self.config.object_classes)
        # qmailUser MUSTs mail: only entries with a primary address can carry it.
        if account.mail:
            classes.append("qmailUser")
        # Only entries that use app passwords need the class (and a site the schema
        # update that brings it: docs/ldap.md, "App passwords").
        if account.app_passwords or account.app_passwords_only:
            classes.append(APP_PASSWORD_CLASS)
        return [encode_utf8(c) for c in classes]


#: The auxiliary class that carries ``mailwardenAppPassword`` and
#: ``mailwardenAppPasswordsOnly`` (src/mailwarden/ldap/mailwarden.ldif).
APP_PASSWORD_CLASS = "mailwardenAppPasswords"  # noqa: S105 - a class name


def app_password_value(app: AppPassword) -> str:
    """One ``mailwardenAppPassword`` value: the app password as compact JSON (its
    digest, never the value), keys sorted, so that equal app passwords are equal
    values (a compare-and-swap deletes exactly the value read)."""
    data = {**app_password_to_json(app), "digest": app.digest}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def app_password_of(value: str) -> AppPassword | None:
    """The app password a ``mailwardenAppPassword`` value holds; None if the value is
    malformed (written by another tool): such a value opens nothing."""
    try:
        data = json.loads(value)
        use = data.get("last_used")
        return AppPassword(
            id=str(data["id"]),
            name=str(data["name"]),
            digest=str(data["digest"]),
            services=tuple(str(s) for s in data.get("services", ())),
            expires=None if data.get("expires") is None else int(data["expires"]),
            created=int(data.get("created", 0)),
            last_used=(
                None
                if use is None
                else LastUse(
                    at=int(use["at"]), service=str(use["service"]), remote_ip=use.get("remote_ip")
                )
            ),
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def field_map(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, _, value = item.partition("=")
        out[name] = value
    return out
