"""``mailwarden checkpassword`` started as root never runs its subprogram as root.

As qmail-popup starts it: root, with the login on fd 3 and a subprogram to exec as
the account's user. Accounts that would leave root's uid or gid in place, or name
a system account, are refused with exit 111 and a log line (Dovecot's
``first_valid_uid`` / ``first_valid_gid``, 500 and 1 by default).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account
from mailwarden.protocols import checkpassword as cp
from tests.classic.conftest import write_config
from tests.classic.test_checkpassword import run_cp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch needs root")

# Shows the uid, gid and groups it runs with (system Python: see test_checkpassword).
SHOW_IDS = [
    "/usr/bin/python3",
    "-c",
    "import json, os; print(json.dumps([os.getuid(), os.getgid(), os.getgroups()]))",
]

ACCOUNTS = {
    "regular": (5000, 5000),
    "nogid": (5000, None),  # was run with gid 0
    "nouid": (None, 5000),  # was run as root
    "root": (0, 0),  # was run as root
    "daemon": (100, 100),  # below first_valid_uid
    "gidzero": (5000, 0),  # below first_valid_gid
}


async def _fill(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    directory = await SQLiteDirectory.open(db, create=True)
    try:
        for name, (uid, gid) in ACCOUNTS.items():
            await directory.create(
                Account(uid=name, password="{PLAIN}pw", uid_number=uid, gid_number=gid)
            )
    finally:
        await directory.close()


def config(tmp_path: Path, extra: str = "") -> Path:
    cfg = write_config(tmp_path / "mw.toml", '[checkpassword]\nvia = "local"\n' + extra)
    asyncio.run(_fill(tmp_path / "data" / "mw.db"))
    return cfg


def login(cfg: Path, user: str) -> tuple[int, list[object] | None, str]:
    """Exit code, what the subprogram printed (None: it did not run), the log."""
    done = run_cp(cfg, f"{user}\0pw\0\0".encode(), args=SHOW_IDS)
    shown = json.loads(done.stdout) if done.stdout else None
    return done.returncode, shown, done.stderr.decode()


def test_a_regular_account_runs_as_its_uid_and_gid_without_root_groups(tmp_path: Path) -> None:
    assert login(config(tmp_path), "regular")[:2] == (0, [5000, 5000, []])


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("nogid", "no numeric uid and gid"),
        ("nouid", "no numeric uid and gid"),
        ("root", "uid 0 is below checkpassword.first_valid_uid (500)"),
        ("daemon", "uid 100 is below checkpassword.first_valid_uid (500)"),
        ("gidzero", "gid 0 is below checkpassword.first_valid_gid (1)"),
    ],
)
def test_an_account_that_would_keep_root_or_a_system_id_is_refused_with_111(
    tmp_path: Path, user: str, why: str
) -> None:
    code, shown, log = login(config(tmp_path), user)
    assert (code, shown) == (cp.EXIT_TEMPFAIL, None)
    assert f"refusing to run /usr/bin/python3 for {user!r}: " in log
    assert why in log


def test_the_limits_are_configurable_but_root_never_passes(tmp_path: Path) -> None:
    cfg = config(tmp_path, "first_valid_uid = 100\nfirst_valid_gid = 0\n")
    assert login(cfg, "daemon")[:2] == (0, [100, 100, []])
    assert login(cfg, "gidzero")[:2] == (0, [5000, 0, []])
    assert login(cfg, "root")[:2] == (cp.EXIT_TEMPFAIL, None)
