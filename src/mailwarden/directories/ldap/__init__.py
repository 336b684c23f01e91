"""The LDAP directory: accounts in OpenLDAP (or any LDAPv3 server) with the qmail-ldap schema.

:class:`LDAPDirectory` implements the ``Directory`` protocol with the semantics of
:mod:`mailwarden.directories.memory` (the reference). Everything that touches
``python-ldap`` lives in this package (:mod:`.mapping` entry <-> Account,
:mod:`.pool` connections and failover, :mod:`.directory` the class); docs/ldap.md
describes the mapping, the schema files (``mailwarden/ldap/*.ldif``) and the failure rules.

Client library. ``python-ldap`` (the maintained binding of OpenLDAP's libldap)
in a bounded thread pool of our own. ``bonsai`` is asyncio-native, but
python-ldap is the binding every distribution ships, its timeouts
(``OPT_NETWORK_TIMEOUT``, ``LDAPObject.timeout``) are libldap's own, and an
operation abandoned by ``asyncio.wait_for`` cannot corrupt anything shared: the
connection it ran on is thrown away, never reused.

Pool and failover. ``pool_size`` slots, each holding at most one connection
bound as the service account (``bind_dn``). An operation takes a slot (waiting
at most ``timeout``), connects it if needed to the first server of ``servers``
that is not resting, and runs with the remaining time of its ``timeout``. When
a server is down or the connection breaks, the server rests for a backoff
(doubling from 0.1 s up to ``backoff_max``) and a *read* is retried at once on
the next server, so one server down out of two is invisible to clients. Writes
are never retried: the first attempt may have been applied. A server comes back
by itself: once its rest is over, the next connection tries it again.

Failure rule. Any outage, timeout or unexpected LDAP result is
:class:`~mailwarden.errors.DirectoryUnavailable`, which the engine turns into a
temporary failure: never into a wrong password. Only results that *mean*
something (no such entry, entry exists, no such value, a syntax the schema
refuses) are interpreted.

Uniqueness. LDAP has no unique constraint across attributes, so create,
replace, update and bulk_upsert search for taken uids and addresses before
writing. Two administrators creating the same address in the same instant can
both succeed; the daemon itself never creates accounts, so this is accepted and
documented. ``bulk_upsert`` checks the whole batch before its first write, so an
invalid or clashing batch writes nothing; an outage in the middle of the writes
can leave part of it written (LDAP has no multi-entry transaction everywhere).

Addresses. ``mail`` and ``mailAlternateAddress`` are IA5 strings in the
standard schemas, so non-ASCII addresses are refused with InvalidAccount.

Rebind. With ``verify = "rebind"`` (qmail-ldap's ``ldaprebind``)
:meth:`LDAPDirectory.verify_password` checks a password by binding as the
account's entry on a fresh connection; the engine calls it instead of the
scheme registry. An empty password is refused before any bind: LDAP treats a
simple bind with an empty password as an anonymous bind, which *succeeds*.
"""

from mailwarden.directories.ldap.directory import MODIFY_ATTEMPTS, LDAPDirectory
from mailwarden.directories.ldap.mapping import DEFAULT_ATTRIBUTES, LdapMapping

__all__ = ["DEFAULT_ATTRIBUTES", "MODIFY_ATTEMPTS", "LDAPDirectory", "LdapMapping"]
