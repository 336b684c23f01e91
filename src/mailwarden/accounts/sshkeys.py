"""OpenSSH public keys as ``authorized_keys`` lines: parse, fingerprint, policy. Pure.

Interface (used by ``mailgate.changes`` and the web page; ``ssh-keys`` export can reuse it)::

    looks_like_key_line(line) -> bool          # a key type token in the first two fields
    parse_key_line(line) -> SshKey             # raises FieldError
    key_refusal(key, *, blocklist=()) -> str | None
                                               # None: acceptable; else the soft-refusal text
    key_set(lines, *, blocklist=(), max_keys=20) -> tuple[str, ...]
                                               # a whole new set of keys (the web form);
                                               # FieldError for any bad, weak or extra key

``parse_key_line`` takes the full sshd(8) AUTHORIZED_KEYS syntax -- optional
options (comma separated, double-quoted values with ``\\"`` escapes), key type,
base64 blob, optional comment -- and decodes the blob itself (RFC 4253 wire
format) to find the real key type and size, so a truncated or garbled blob is
refused here instead of being stored and silently ignored by sshd later.
``SshKey.fingerprint`` is ``SHA256:`` + unpadded base64 of SHA-256 over the
blob, exactly as ``ssh-keygen -lf`` prints it; ``SshKey.bits`` is the size
``ssh-keygen -l`` prints (RSA/DSA modulus bits, the curve size for ECDSA, 256
for Ed25519).

Policy (``key_refusal``): Ed25519, ECDSA (nistp256/384/521), RSA of 2048 bits
or more and the FIDO ``sk-`` variants are accepted; DSA (fixed at 1024 bits and
removed from OpenSSH) and shorter RSA keys are refused *softly* -- a report
line, processing goes on -- because the sender did nothing malformed, the key
is merely too weak. A fingerprint on the administrator's blocklist (known
compromised keys, e.g. the 2008 Debian OpenSSL ones) is refused the same way.
Certificates (``*-cert-v01@openssh.com``) are not accepted: a CA key belongs
in ``cert-authority`` lines that an administrator writes, not in self-service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailwarden.errors import FieldError

__all__ = [
    "KEY_TYPES",
    "MAX_KEY_LINE_LENGTH",
    "MIN_RSA_BITS",
    "SshKey",
    "fingerprint_of",
    "key_refusal",
    "key_set",
    "looks_like_key_line",
    "parse_key_line",
]

# A 16384-bit RSA key line is about 2800 characters; options can add some.
MAX_KEY_LINE_LENGTH = 8192
MIN_RSA_BITS = 2048

_ECDSA_CURVES = {"nistp256": (256, 65), "nistp384": (384, 97), "nistp521": (521, 133)}
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
KEY_TYPES: tuple[str, ...] = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
    SK_ECDSA,
    SK_ED25519,
)
# What ssh-keygen -l prints in parentheses.
_LABELS = {
    "ssh-ed25519": "ED25519",
    "ssh-rsa": "RSA",
    "ssh-dss": "DSA",
    SK_ECDSA: "ECDSA-SK",
    SK_ED25519: "ED25519-SK",
}

# sshd(8) AUTHORIZED_KEYS FILE FORMAT options; ``True``: takes a quoted value.
_OPTIONS = {
    "agent-forwarding": False,
    "cert-authority": False,
    "command": True,
    "environment": True,
    "expiry-time": True,
    "from": True,
    "no-agent-forwarding": False,
    "no-port-forwarding": False,
    "no-pty": False,
    "no-user-rc": False,
    "no-x11-forwarding": False,
    "permitlisten": True,
    "permitopen": True,
    "port-forwarding": False,
    "principals": True,
    "pty": False,
    "no-touch-required": False,
    "verify-required": False,
    "restrict": False,
    "tunnel": True,
    "user-rc": False,
    "x11-forwarding": False,
}
_OPTION_RE = re.compile(r'([A-Za-z0-9-]+)(?:="((?:[^"\\]|\\.)*)")?')
_OPTION_START = re.compile(r"^[A-Za-z][A-Za-z0-9-]*(?:[=,\s]|$)")
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class SshKey:
    """One parsed ``authorized_keys`` line.

    ``options`` is the option text as given (``""`` if none), ``key_type`` the
    type token (equal to the type inside the blob), ``blob`` the decoded key,
    ``comment`` the rest of the line (``""`` if none), ``bits`` the key size as
    ``ssh-keygen -l`` reports it.
    """

    options: str
    key_type: str
    blob: bytes
    comment: str
    bits: int

    @property
    def base64(self) -> str:
        return base64.b64encode(self.blob).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
        return fingerprint_of(self.blob)

    @property
    def label(self) -> str:
        """``RSA``, ``ECDSA``, ``ED25519``, ``DSA``, ``ECDSA-SK``, ``ED25519-SK``."""
        return _LABELS.get(self.key_type, "ECDSA")

    def line(self) -> str:
        """The normalised line to store: ``[options ]type base64[ comment]``."""
        parts = [self.options] if self.options else []
        parts += [self.key_type, self.base64]
        if self.comment:
            parts.append(self.comment)
        return " ".join(parts)

    def short_form(self) -> str:
        """``[options ]type <first 8>..<last 8>[ comment]``, for reports."""
        b64 = self.base64
        parts = [self.options] if self.options else []
        parts += [self.key_type, f"{b64[:8]}..{b64[-8:]}"]
        if self.comment:
            parts.append(self.comment)
        return " ".join(parts)

    def describe(self) -> str:
        """``<bits> <fingerprint> [<short form>]``, the report's key text."""
        return f"{self.bits} {self.fingerprint} [{self.short_form()}]"


def fingerprint_of(blob: bytes) -> str:
    """SHA256 fingerprint of a key blob, ``ssh-keygen -l`` style (no ``=`` padding)."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


# --------------------------------------------------------------------------- line syntax


def _split_options(line: str) -> tuple[str, str]:
    """Split a leading option string (up to unquoted whitespace) from the rest."""
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].lstrip(" \t")
        i += 1
    if quoted:
        raise FieldError("SSH key options: unterminated quoted value")
    return line, ""


def _check_options(options: str) -> None:
    pos = 0
    while True:
        m = _OPTION_RE.match(options, pos)
        if m is None or m.end() == pos:
            raise FieldError(f"SSH key options: cannot parse {options[pos : pos + 40]!r}")
        name, value = m.group(1).lower(), m.group(2)
        takes_value = _OPTIONS.get(name)
        if takes_value is None:
            raise FieldError(f"SSH key options: unknown option {m.group(1)!r}")
        if takes_value != (value is not None):
            need = "needs" if takes_value else "takes no"
            raise FieldError(f'SSH key options: {m.group(1)} {need} ="value"')
        pos = m.end()
        if pos == len(options):
            return
        if options[pos] != ",":
            raise FieldError(f"SSH key options: expected ',' at {options[pos : pos + 40]!r}")
        pos += 1


def looks_like_key_line(line: str) -> bool:
    """Whether ``line`` is meant as a key: a known key type as the first field,
    or as the first field after an option string."""
    text = line.strip()
    if not text or len(text) > MAX_KEY_LINE_LENGTH:
        return False
    first = text.split(None, 1)[0]
    if first in KEY_TYPES:
        return True
    if not _OPTION_START.match(text):
        return False
    try:
        _, rest = _split_options(text)
    except FieldError:
        return False
    return bool(rest) and rest.split(None, 1)[0] in KEY_TYPES


def parse_key_line(line: str) -> SshKey:
    """Parse one ``authorized_keys`` line and decode its blob; raises FieldError."""
    text = line.strip()
    if len(text) > MAX_KEY_LINE_LENGTH:
        raise FieldError(f"SSH key line longer than {MAX_KEY_LINE_LENGTH} characters")
    if any(ord(c) < 32 and c != "\t" for c in text) or "\x7f" in text:
        raise FieldError("SSH key line contains control characters")
    options = ""
    rest = text
    if not text or text.split(None, 1)[0] not in KEY_TYPES:
        options, rest = _split_options(text)
        _check_options(options)
    fields = rest.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise FieldError("not an SSH public key line (type, base64 key, optional comment)")
    key_type, b64 = fields[0], fields[1]
    # Stored lines carry no TAB (the directories refuse control characters):
    # a TAB in a comment becomes a space; inside an option value it is refused.
    comment = fields[2].strip().replace("\t", " ") if len(fields) == 3 else ""
    if "\t" in options:
        raise FieldError("SSH key options: TAB inside an option value")
    if not _B64_RE.match(b64) or len(b64) % 4:
        raise FieldError(f"SSH key ({key_type}): the key is not valid base64 (truncated?)")
    try:
        blob = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise FieldError(f"SSH key ({key_type}): the key is not valid base64") from None
    bits = _decode_blob(key_type, blob)
    return SshKey(options=options, key_type=key_type, blob=blob, comment=comment, bits=bits)


# --------------------------------------------------------------------------- blob


class _Reader:
    """RFC 4251 §5 ``string``/``mpint`` reader over a key blob."""

    def __init__(self, data: bytes, key_type: str) -> None:
        self.data = data
        self.pos = 0
        self.key_type = key_type

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise self._bad("truncated")
        n = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        start = self.pos + 4
        if n > len(self.data) - start:
            raise self._bad("truncated")
        self.pos = start + n
        return self.data[start : self.pos]

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise self._bad("negative number")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self._bad("trailing data")

    def _bad(self, why: str) -> FieldError:
        return FieldError(f"SSH key ({self.key_type}): the key data is invalid ({why})")


def _decode_blob(key_type: str, blob: bytes) -> int:
    """Check the blob against its type and return its size in bits."""
    r = _Reader(blob, key_type)
    inner = r.string()
    if inner != key_type.encode("ascii"):
        raise r._bad(f"it says {inner[:40].decode('ascii', 'replace')!r}")
    if key_type == "ssh-rsa":
        e, n = r.mpint(), r.mpint()
        if e < 3 or e % 2 == 0 or n.bit_length() < 512 or n % 2 == 0:
            raise r._bad("not an RSA public key")
        bits = n.bit_length()
    elif key_type == "ssh-dss":
        p, q, g, y = r.mpint(), r.mpint(), r.mpint(), r.mpint()
        if not (p and q and g and y):
            raise r._bad("not a DSA public key")
        bits = p.bit_length()
    elif key_type in (SK_ED25519, "ssh-ed25519"):
        if len(r.string()) != 32:
            raise r._bad("an Ed25519 key is 32 bytes")
        if key_type == SK_ED25519:
            r.string()  # application, e.g. "ssh:"
        bits = 256
    else:  # ecdsa-sha2-<curve> and sk-ecdsa-sha2-nistp256@openssh.com
        curve = r.string().decode("ascii", "replace")
        expected = "nistp256" if key_type == SK_ECDSA else key_type.rsplit("-", 1)[-1]
        if curve != expected:
            raise r._bad(f"curve {curve[:20]!r} does not match the type")
        bits, point_len = _ECDSA_CURVES[curve]
        point = r.string()
        if len(point) != point_len or point[0] != 4:
            raise r._bad("not an uncompressed curve point")
        if key_type == SK_ECDSA:
            r.string()  # application
    r.end()
    return bits


# --------------------------------------------------------------------------- policy


def key_refusal(key: SshKey, *, blocklist: Iterable[str] = ()) -> str | None:
    """``None`` when the key may be stored; otherwise the (soft) refusal text."""
    if key.fingerprint in set(blocklist):
        return (
            f"SSH key {key.fingerprint} is known to be compromised and is not added. "
            "Generate a new key."
        )
    if key.key_type == "ssh-dss":
        return (
            "SSH key fails formal criteria, not added. DSA keys are not accepted; "
            "use ed25519, ecdsa or RSA (>= 2048 bits)."
        )
    if key.key_type == "ssh-rsa" and key.bits < MIN_RSA_BITS:
        return (
            f"SSH key fails formal criteria, not added. RSA keys need >= {MIN_RSA_BITS} "
            f"bits, this one has {key.bits}."
        )
    return None


def key_set(
    lines: Iterable[str], *, blocklist: Iterable[str] = (), max_keys: int
) -> tuple[str, ...]:
    """The stored lines of a whole new set of keys, one ``authorized_keys`` line each.

    Empty lines and ``#`` comments are skipped, a key given twice is kept once.
    Unlike a ``change`` mail, which reports a weak key and goes on, a set is
    all or nothing: FieldError for the first line that does not parse, a key
    :func:`key_refusal` refuses, or more than ``max_keys`` keys.
    """
    blocked = frozenset(blocklist)
    stored: list[str] = []
    seen: set[str] = set()
    for raw in lines:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        key = parse_key_line(text)
        refusal = key_refusal(key, blocklist=blocked)
        if refusal is not None:
            raise FieldError(refusal)
        if key.fingerprint not in seen:
            seen.add(key.fingerprint)
            stored.append(key.line())
    if len(stored) > max_keys:
        raise FieldError(f"At most {max_keys} keys per account.")
    return tuple(stored)
