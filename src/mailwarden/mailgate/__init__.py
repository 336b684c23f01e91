"""The OpenPGP-signed self-service mail gateway (``mailwarden mailgate``); see docs/mailgate.md.

Pure modules (parsers and the ``change`` policy: position, sshkeys, dns, changes, mime)
import no asyncio and do no I/O; pgp, replay, mail and gateway are the I/O side.
"""
