"""``mailwarden user list`` with many accounts: seconds per output format.

Creates ACCOUNTS accounts in a fresh embedded directory (a temporary folder;
``import passwd-file`` with one fixed PLAIN password, so hashing is not measured),
then runs ``mailwarden user list`` as a real process writing into a pipe, once per
format (tsv, json, table), and prints the wall-clock seconds and the lines written.
Issue 15 measured 94 s for 50,000 accounts in the old table output to a pipe.

Usage: ``python bench/cli_list.py [--accounts N]`` (at most 1,000,000).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_ACCOUNTS = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    args = parser.parse_args()
    count = min(max(args.accounts, 1), MAX_ACCOUNTS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = folder / "mw.toml"
        cfg.write_text('[directory]\npath = "mw.db"\n')
        passwd = folder / "passwd"
        with passwd.open("w") as fh:
            for n in range(count):
                fh.write(
                    f"user{n:07d}@a-rather-long-example-domain.example.org:{{PLAIN}}pw::::::\n"
                )
        mailwarden = [sys.executable, "-m", "mailwarden", "--config", str(cfg)]
        subprocess.run([*mailwarden, "init"], check=True, capture_output=True, timeout=120)
        subprocess.run(
            [*mailwarden, "import", "passwd-file", str(passwd), "-q"],
            check=True,
            capture_output=True,
            timeout=3600,
        )
        print(f"user list of {count} accounts into a pipe")
        for fmt in ("tsv", "json", "table"):
            started = time.perf_counter()
            done = subprocess.run(
                [*mailwarden, "--format", fmt, "user", "list", "--limit", str(count)],
                check=True,
                capture_output=True,
                timeout=3600,
            )
            seconds = time.perf_counter() - started
            lines = done.stdout.count(b"\n")
            print(f"  {fmt:<6} {seconds:7.2f} s  {lines:>8} lines")


if __name__ == "__main__":
    main()
