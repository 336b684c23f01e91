"""Helpers shared by the test modules (import them from here, not from conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailwarden import schemes
from mailwarden.config import Config
from mailwarden.model import AuthAttempt, Password


def make_config(**sections: dict[str, Any]) -> Config:
    """A Config with some keys of some sections overridden, e.g. auth={"default_realm": "x"}."""
    config = Config()
    for name, overrides in sections.items():
        current = getattr(config, name)
        config = dataclasses.replace(config, **{name: dataclasses.replace(current, **overrides)})
    return config


# Tests hash with a cheap policy: SHA512-CRYPT costs ~1 ms, argon2's default ~60 ms.
FAST = make_config(passwords={"scheme": "SHA512-CRYPT"})


def hashed(password: str, scheme: str = "SHA512-CRYPT", user: str = "") -> str:
    return schemes.generate(password.encode(), scheme, user=user)


def attempt(username: str, password: str | None = "secret", **kw: Any) -> AuthAttempt:
    kw.setdefault("service", "imap")
    return AuthAttempt(
        username=username,
        credentials=Password(password.encode()) if password is not None else None,
        **kw,
    )


@dataclasses.dataclass(frozen=True)
class Pem:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def make_cert(directory: Path) -> Pem:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost, valid one day."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    pem = Pem(cert=directory / "cert.pem", key=directory / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(pem.key),
            "-out",
            str(pem.cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pem


async def eventually(check: Callable[[], bool], *, seconds: float = 10.0) -> bool:
    """Wait until ``check()`` holds, polling every 25 ms for at most ``seconds``;
    whether it did (the caller asserts what it expected, with its own message)."""
    for _ in range(max(1, int(seconds / 0.025))):
        if check():
            return True
        await asyncio.sleep(0.025)
    return check()


def export_workers() -> list[str]:
    """This process's children that are export workers, or zombies of any process
    not reaped yet (``pid state command``): what an export must never leave behind."""
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and ("exportworker" in command or state == "Z"):
            found.append(f"{entry.name} {state} {command}")
    return found
