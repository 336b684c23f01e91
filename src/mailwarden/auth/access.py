"""The access policy: who may log in as whom, to what, from where, once the
credentials are proven (or, for PAM's ``account`` phase and the web session,
without any).

The engine (engine.py) asks this module and nothing else for these rules; no
front end re-decides any of them. Pure: no I/O, no directory, no asyncio.

* **Status and service switches** (:meth:`AccessPolicy.refusal`): an account that
  is not active, or whose switch for the service is off, or (pam_mapi's
  ``service=a|b``, :attr:`~mailwarden.model.AuthAttempt.switches`) none of whose
  listed switches is on, is refused with the configured message. Only ever
  applied after the password was proven, so the message tells an attacker nothing.
* **Networks**: an account's ``allow_nets`` (Dovecot's rule, ``local`` for a
  request with no address).
* **Master users**: ``target*master`` (with a configured separator) or SASL
  authzid ≠ authcid names a target; the authenticating account must carry the
  master flag (:meth:`AccessPolicy.split_names`).
* **Anonymous**: SASL ANONYMOUS logs in as the one anonymous user the caller
  names, only when the caller offers the mechanism (:meth:`anonymous_allowed`).
* **nodelay**: the passdb field that lets a front end skip its failure delay,
  honoured only for an account whose password was proven.
* **Fields**: the passdb fields a client may see (never the hidden ones), and
  qmail-ldap's ``mailHost`` clustering as Dovecot proxy fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from mailwarden.auth.usernames import UsernameRules
from mailwarden.config import AuthConfig, ClusterConfig
from mailwarden.model import (
    EMPTY,
    Account,
    AccountStatus,
    AuthAttempt,
    Denied,
    DenyReason,
    ip_in_nets,
)
from mailwarden.records import record

# passdb fields that steer the engine itself and are never sent to a client
# (Dovecot calls these "hidden"; see reference §3).
HIDDEN_PASSDB_FIELDS = frozenset(
    {
        "user",
        "login_user",
        "password",
        "password_noscheme",
        "allow_nets",
        "allow_real_nets",
        "fail",
        "delay_until",
    }
)


@record
class Names:
    """Who authenticates and who they act as, after normalisation."""

    authcid: str | None
    target: str | None  # None: not a master login
    original: str


class AccessPolicy:
    """The rules of the module docstring, for one configuration."""

    def __init__(
        self,
        auth: AuthConfig,
        cluster: ClusterConfig,
        *,
        anonymous_user: str | None = None,
        anonymous_offered: bool = False,
    ) -> None:
        self.auth = auth
        self.cluster = cluster
        self.rules = UsernameRules.from_config(auth)
        self.anonymous_user = anonymous_user
        self.anonymous_offered = anonymous_offered
        # The anonymous user's login name, normalised like every other login.
        self._anonymous = self.rules.normalise(anonymous_user) if anonymous_user else None

    def split_names(self, attempt: AuthAttempt) -> Names:
        """The authenticating name and the master login's target, normalised."""
        login = attempt.username
        if attempt.realm and "@" not in login:
            # saslauthd's realm (``saslauthd.realm = "append"``) completes a bare name.
            login = f"{login}@{attempt.realm}"
        target: str | None = attempt.authzid or None
        sep = self.auth.master_user_separator
        if target is None and sep and sep in login:
            # Dovecot splits at the *first* separator: "target*master".
            target, login = login.split(sep, 1)
        authcid = self.rules.normalise(login)
        norm_target = self.rules.normalise(target) if target is not None else None
        if target is not None and norm_target is None:
            authcid = None  # an impossible target name: fail like any bad login
        if norm_target == authcid:
            norm_target = None  # authzid == authcid (doveadm sends both) is no master login
        return Names(authcid=authcid, target=norm_target, original=attempt.username)

    def refusal(
        self, account: Account, service: str, switches: tuple[str, ...] = ()
    ) -> Denied | None:
        """Why ``account`` may not use ``service`` now (status, service switches,
        pam_mapi's OR-list ``switches``), or None when it may."""
        if account.status is not AccountStatus.ACTIVE:
            return Denied(
                reason=DenyReason.DISABLED,
                message=self.auth.disabled_message,
                user=account.uid,
                nodelay=nodelay(account),
            )
        if not account.service_enabled(service) or (
            switches and not any(account.service_enabled(s) for s in switches)
        ):
            return Denied(
                reason=DenyReason.SERVICE_DISABLED,
                message=self.auth.service_disabled_message,
                user=account.uid,
                nodelay=nodelay(account),
            )
        return None

    def network_refusal(self, account: Account, remote_ip: str | None) -> Denied | None:
        """Denied(NETWORK) when ``account`` has ``allow_nets`` and ``remote_ip`` is in none."""
        if account.allow_nets and not ip_in_nets(remote_ip, account.allow_nets):
            return Denied(reason=DenyReason.NETWORK, user=account.uid, nodelay=nodelay(account))
        return None

    def authz_refusal(self, account: Account) -> Denied:
        """The authenticating account may not act as the target it named."""
        return Denied(reason=DenyReason.AUTHZ, user=account.uid, nodelay=nodelay(account))

    def anonymous_allowed(self, account: Account | None, authcid: str | None) -> bool:
        """SASL ANONYMOUS (RFC 4505): a login without credentials, as one fixed user.

        Dovecot lets ANONYMOUS in as ``auth_anonymous_username`` without asking a
        passdb. Here it is accepted only when all of these hold: the engine was
        told that ANONYMOUS is offered (app.py: when the administrator listed it in
        ``dovecot.mechanisms``, the only place it can be offered, so no other front
        end can smuggle it in), the login names exactly the anonymous user the engine
        was given, and that user exists as an account. The last rule keeps the
        usual checks (status, per-service switches, networks) in force for
        anonymous logins: disabling the account turns them off.
        """
        anonymous = self._anonymous
        return (
            self.anonymous_offered
            and account is not None
            and anonymous is not None
            and authcid == anonymous
        )

    def is_anonymous(self, user: str) -> bool:
        """Whether ``user`` (an accepted login's user) is the anonymous user."""
        return self.anonymous_user is not None and user == self.anonymous_user

    def passdb_fields(self, account: Account, service: str) -> dict[str, str]:
        """The passdb fields a client sees for an accepted login as ``account``:
        its own without the hidden ones, plus the proxy fields of clustering."""
        passdb = account.passdb_fields
        fields = (
            {k: v for k, v in passdb.items() if k not in HIDDEN_PASSDB_FIELDS} if passdb else {}
        )
        if self.cluster.enabled:
            fields.update(self.proxy_fields(account, service))
        return fields

    def proxy_fields(self, account: Account, service: str) -> dict[str, str]:
        """qmail-ldap clustering as Dovecot proxy fields (docs/classic-interfaces.md).

        Only after the login was accepted (so a disabled account bounces here and is
        never forwarded), and only for an account whose ``mail_host`` is another
        host than ``cluster.me``: Dovecot, nginx or checkpassword then forward the
        session to that host instead of serving it locally.
        """
        cluster = self.cluster
        host = account.mail_host
        if not cluster.enabled or not host or host.lower() == cluster.me.lower():
            return {}
        fields = {cluster.proxy: "", "host": host, "destuser": account.uid}
        port = {"pop3": cluster.pop3_port, "imap": cluster.imap_port}.get(service.lower())
        if port is not None:
            fields["port"] = str(port)
        return fields


def visible_passdb_fields(fields: Mapping[str, str]) -> Mapping[str, str]:
    """``fields`` without the hidden ones (the master socket's ``PASS`` answer)."""
    if not fields:
        return EMPTY
    return {k: v for k, v in fields.items() if k not in HIDDEN_PASSDB_FIELDS}


def nodelay(account: Account) -> bool:
    """Whether the account's passdb asks for replies without the failure delay
    (for a front end to honour only once the password was proven). A deleted
    account's fields count for nothing, as it is found by no lookup."""
    return "nodelay" in account.passdb_fields and account.status is not AccountStatus.DELETED
