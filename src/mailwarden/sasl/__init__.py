"""SASL mechanisms as pure state machines, and the registry of them.

Each mechanism lives in its own module (SCRAM's two hashes share one, as do the
two OAuth mechanisms' common parts); :mod:`mailwarden.sasl.base` defines the
session interface they implement. Adding a mechanism is one module and one line
in :data:`MECHANISMS`. Nothing in this package does I/O or imports asyncio.

The registry is in the order Dovecot 2.3 lists these mechanisms in its handshake
(reference §1.2), which is a sensible default for ``auth_mechanisms``.
"""

from __future__ import annotations

from mailwarden.sasl.anonymous import Anonymous
from mailwarden.sasl.apop import Apop
from mailwarden.sasl.base import (
    Challenge,
    Finished,
    Mechanism,
    MechanismContext,
    MechanismFailed,
    MechFlag,
    NeedCredentials,
    Step,
)
from mailwarden.sasl.cram_md5 import CramMd5
from mailwarden.sasl.digest_md5 import DigestMd5
from mailwarden.sasl.external import External
from mailwarden.sasl.login import Login
from mailwarden.sasl.oauthbearer import OAuthBearer
from mailwarden.sasl.plain import Plain
from mailwarden.sasl.scram import ScramSha1, ScramSha256
from mailwarden.sasl.xoauth2 import XOAuth2

MECHANISMS: dict[str, type[Mechanism]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMd5,
    "DIGEST-MD5": DigestMd5,
    "SCRAM-SHA-1": ScramSha1,
    "SCRAM-SHA-256": ScramSha256,
    "ANONYMOUS": Anonymous,
    "EXTERNAL": External,
    "APOP": Apop,
    "OAUTHBEARER": OAuthBearer,
    "XOAUTH2": XOAuth2,
}

__all__ = [
    "MECHANISMS",
    "Challenge",
    "Finished",
    "MechFlag",
    "Mechanism",
    "MechanismContext",
    "MechanismFailed",
    "NeedCredentials",
    "Step",
]
