"""Secrets kept out of the config file: the one reader of every ``*_file`` key.

Every secret key ``x`` of a section has a companion ``x_file`` (``sql.password`` and
``sql.password_file``, ``http.admin_token`` and ``http.admin_token_file``...); a key
that only exists as a file (``guard.redis.password_file``,
``http.session_secret_file``) is read by the same :func:`read_secret`. Setting both
``x`` and ``x_file`` is an error (:func:`.build.check_pairs`, run by :mod:`.build` for every
section, so a new section's pair is checked without a line of its own).

The rules, the same for every key:

* **Where.** A relative path is relative to the config file's folder. A path that
  starts with ``$CREDENTIALS_DIRECTORY/`` is inside the folder systemd names in that
  variable for ``LoadCredential=``/``SetCredential=`` (an error when it is not set).
* **What.** The whole file, at most :data:`MAX_SECRET_BYTES`, with one trailing
  newline (``\\n`` or ``\\r\\n``) removed, as ``echo`` and editors leave one. Any
  other whitespace is part of the secret. A text secret must be UTF-8, not empty and
  one line (a second line is more likely a mistake than part of a password).
* **Mode.** Not checked. Docker secrets are mode 0444 and Kubernetes secret volumes
  0644 by default, inside a container's own mount namespace: refusing readable
  files would refuse exactly the setups this is for. Keep secret files 0600 or
  0640 on a shared host; systemd credentials are 0400 already.
* **When.** :func:`resolve` reads the pairs' files when the configuration is loaded
  (``confignames.load``: every command, ``serve`` and each reload), and puts the
  secret in ``x`` (``x_file`` then empty): every consumer reads ``x`` only. A file
  that cannot be read is a :class:`~mailwarden.errors.ConfigError` naming the key
  and the path (the command line exits 78).

Belongs here: reading secret files and the pair rule; nothing else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailwarden.config.build import pairs
from mailwarden.errors import ConfigError

if TYPE_CHECKING:
    from mailwarden.config.whole import Config

#: No secret is longer (a security limit: a wrong path must not read a disk image).
MAX_SECRET_BYTES = 65536

CREDENTIALS_PREFIX = "$CREDENTIALS_DIRECTORY/"

T = TypeVar("T")


def secret_path(name: str, *, key: str, resolve: Callable[[str], Path]) -> Path:
    """The file ``name`` names (``resolve`` makes a config-relative path absolute)."""
    if name.startswith(CREDENTIALS_PREFIX):
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ConfigError(
                f"{name}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit "
                "with LoadCredential= or SetCredential=)",
                key=key,
            )
        return Path(folder) / name.removeprefix(CREDENTIALS_PREFIX)
    return resolve(name)


def read_secret_bytes(name: str, *, key: str, resolve: Callable[[str], Path]) -> bytes:
    """The content of secret file ``name`` (rules: module docstring), as bytes."""
    path = secret_path(name, key=key, resolve=resolve)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=key) from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"{path} is longer than {MAX_SECRET_BYTES} bytes", key=key)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ConfigError(f"{path} is empty", key=key)
    return data


def read_secret(name: str, *, key: str, resolve: Callable[[str], Path]) -> str:
    """The text secret in file ``name``: UTF-8, one line (rules: module docstring)."""
    data = read_secret_bytes(name, key=key, resolve=resolve)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\n" in text or "\r" in text:
        path = secret_path(name, key=key, resolve=resolve)
        what = "is not UTF-8 text" if text is None else "holds more than one line"
        raise ConfigError(f"{path} {what}", key=key)
    return text


def resolve(config: Config) -> Config:
    """``config`` with every pair's file read into its ``x`` (``x_file`` emptied).
    ConfigError naming the key, where it was set and the path, for a file that
    cannot be read."""
    from . import config_relative, located  # noqa: PLC0415 - the package imports this one

    def relative(path: str) -> Path:
        return Path(config_relative(config.source, path))

    try:
        return _resolve(config, "", relative)
    except ConfigError as exc:
        if exc.path is not None or exc.key is None:
            raise
        detail = str(exc).removeprefix(f"{exc.key}: ")
        raise ConfigError(detail, path=located(config, exc.key), key=exc.key) from None


def _resolve(section: T, key: str, relative: Callable[[str], Path]) -> T:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            inner = _resolve(value, f"{key}.{f.name}" if key else f.name, relative)
            if inner is not value:
                changes[f.name] = inner
    for name, file_name in pairs(section):
        file_value = getattr(section, file_name)
        if file_value:
            where = f"{key}.{file_name}" if key else file_name
            changes[name] = read_secret(file_value, key=where, resolve=relative)
            changes[file_name] = ""
    if not changes:
        return section
    return dataclasses.replace(section, **changes)  # type: ignore[type-var]
