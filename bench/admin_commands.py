"""Admin commands at scale (issue #18): seconds and peak RSS of each, as a user runs them.

At ``--accounts N`` (default 10,000; up to 1,000,000) in a fresh SQLite directory
in a temp dir, each command runs as a real process:

* ``import passwd-file FILE`` — N lines (long addresses, one fixed SHA512-CRYPT-like
  hash: hashing is not measured), made once and cached under ``.cache/bench/``;
* ``export passwd-file FILE`` — and the lines it wrote are counted;
* ``user list --limit N`` into a pipe — total time and time to the first line; every
  line's uid is checked against the accounts, and lines cut short, missing or
  unknown are reported (issue #18 saw addresses cut short in piped output);
* ``migrate --to`` an LDAP directory on a private slapd (tests/slapd.py, equality
  indexes only, as docs/ldap.md advises for a bulk load) — only if
  ``mailwarden migrate --help`` works in this tree; otherwise reported as skipped.

Peak RSS is the command's own (``wait4``'s ``ru_maxrss``: the process and any it
waited for). Every command has a timeout (60 s + 2 ms per account); one that runs
over is killed and reported. ``--write`` records the table in docs/performance.md
(its own section; ``bench/compare`` keeps it).

Usage: ``python bench/admin_commands.py [--accounts N] [--write]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import backends
import perfdoc
from import_passwdfile import FAKE_HASH

MAX_ACCOUNTS = 1_000_000
DOMAIN = "a-rather-long-example-domain.example.org"
NAME = re.compile(rb"user(\d{7})@" + re.escape(DOMAIN.encode()))
SHORT = re.compile(rb"user\d{0,7}(@[a-z.-]*)?")
FULL_LENGTH = len(f"user0000000@{DOMAIN}")
MAILWARDEN = [sys.executable, "-m", "mailwarden"]

# issue #18's targets at 1M accounts, seconds
TARGETS = {
    "import passwd-file": 90.0,
    "export passwd-file": 20.0,
    "user list (to a pipe)": 10.0,
    "migrate SQLite → LDAP": 600.0,
}
FIRST_LINE_TARGET = 1.0


@dataclass
class Measured:
    command: str
    seconds: float = 0.0
    first_line: float | None = None
    rss_mib: float = 0.0
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def passwd_source(count: int) -> Path:
    backends.CACHE.mkdir(parents=True, exist_ok=True)
    path = backends.CACHE / f"admin-passwd-{count}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as out:
            for n in range(count):
                out.write(f"user{n:07d}@{DOMAIN}:{FAKE_HASH}:5000:5000::/var/vmail/{n}::\n")
        tmp.rename(path)
    return path


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, float]:
    """Reap ``proc`` by ``deadline`` (else kill it): (exit code or None, peak RSS MiB)."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
            return proc.returncode, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _pid, _status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, usage.ru_maxrss / 1024
        time.sleep(0.01)


def _ended(out: Measured, timeout: float, errors: Path) -> None:
    if out.exit_code is None:
        out.notes.append(f"killed after {timeout:.0f} s")
    elif out.exit_code:
        last = errors.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        out.notes.append(f"exit code {out.exit_code}: {last[0][:200]}")


def run(label: str, args: list[str], timeout: float, errors: Path) -> Measured:
    """One command, its output thrown away (its stderr into ``errors``)."""
    out = Measured(label)
    started = time.monotonic()
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [*MAILWARDEN, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    out.exit_code, out.rss_mib = _wait(proc, started + timeout)
    out.seconds = time.monotonic() - started
    _ended(out, timeout, errors)
    return out


def is_cut_short(uid: bytes) -> bool:
    """A prefix of an account's uid (an ellipsis at its end allowed)."""
    uid = uid.removesuffix("…".encode()).removesuffix(b"...")
    if len(uid) >= FULL_LENGTH or not SHORT.fullmatch(uid):
        return False
    at = uid.find(b"@")
    return at < 0 or f"@{DOMAIN}".encode().startswith(uid[at:])


def run_piped_list(args: list[str], count: int, timeout: float, errors: Path) -> Measured:
    """``user list`` writing into a pipe this process reads: time to the first line,
    total time, and whether every account came out whole."""
    out = Measured("user list (to a pipe)")
    started = time.monotonic()
    deadline = started + timeout
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [*MAILWARDEN, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    assert proc.stdout is not None
    seen = bytearray(count)
    lines = cut = unknown = 0
    example = ""
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(proc.stdout.fileno(), 1 << 20)
            if not chunk:
                break
            if out.first_line is None and b"\n" in chunk:
                out.first_line = time.monotonic() - started
            *whole, pending = (pending + chunk).split(b"\n")
            for line in whole:
                lines += 1
                uid = line.split(b"\t", 1)[0]
                m = NAME.fullmatch(uid)
                if m and int(m.group(1)) < count:
                    seen[int(m.group(1))] = 1
                elif is_cut_short(uid):
                    cut += 1
                    example = example or uid.decode(errors="replace")
                else:
                    unknown += 1
                    example = example or uid.decode(errors="replace")
    proc.stdout.close()
    out.exit_code, out.rss_mib = _wait(proc, deadline)
    out.seconds = time.monotonic() - started
    missing = count - sum(seen)
    out.notes.append(f"{lines:,} lines")
    if cut:
        out.notes.append(f"TRUNCATED: {cut:,} uids cut short (e.g. {example!r})")
    if unknown:
        out.notes.append(f"{unknown:,} lines not an account (e.g. {example!r})")
    if missing:
        out.notes.append(f"{missing:,} accounts missing")
    if pending:
        out.notes.append("last line without a newline")
    _ended(out, timeout, errors)
    return out


def default_list_limit(base: list[str]) -> int | None:
    """``user list``'s default ``--limit`` as its ``--help`` states it (None: none)."""
    done = subprocess.run(
        [*MAILWARDEN, *base, "user", "list", "--help"], capture_output=True, timeout=60, check=False
    )
    found = re.search(rb"--limit\s+INTEGER\s+\[default:\s*(\d+)\]", done.stdout)
    return int(found.group(1)) if found else None


def has_migrate() -> bool:
    done = subprocess.run(
        [*MAILWARDEN, "migrate", "--help"], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


@contextlib.contextmanager
def ldap_target(root: Path) -> Iterator[Path]:
    """A config file of an LDAP directory on an empty private slapd (stopped at the end)."""
    # Equality indexes only, as docs/ldap.md advises for a bulk load (substring
    # indexes multiply the index writes of every add; add them after, slapindex).
    server = backends.slapd.Slapd(root / "slapd", substring_indexes=False)
    server.start(timeout=60)
    try:
        cfg = root / "ldap.toml"
        cfg.write_text(backends.ldap_directory_toml(server.url))
        yield cfg
    finally:
        server.stop()


def measure(count: int) -> list[Measured]:
    source = passwd_source(count)
    timeout = 60.0 + count * 0.002
    results = []
    with tempfile.TemporaryDirectory(prefix="mailwarden-admin-") as tmp:
        work = Path(tmp)
        cfg = work / "mw.toml"
        cfg.write_text(f'[directory]\npath = "{work / "mw.db"}"\n')
        base = ["-c", str(cfg)]
        subprocess.run([*MAILWARDEN, *base, "init"], check=True, capture_output=True, timeout=60)
        steps = [
            ("import passwd-file", ["import", "passwd-file", str(source), "-q"]),
            ("export passwd-file", ["export", "passwd-file", str(work / "export")]),
        ]
        errors = work / "stderr"
        for label, args in steps:
            results.append(run(label, [*base, *args], timeout, errors))
            print(line(results[-1]), flush=True)
        exported = work / "export"
        if exported.exists():
            with exported.open("rb") as f:
                written = sum(1 for _ in f)
            results[-1].notes.append(f"{written:,} lines")
        listing = [*base, "user", "list", "--limit", str(count)]
        results.append(run_piped_list(listing, count, timeout, errors))
        limit = default_list_limit(base)
        if limit is not None and limit < count:
            results[-1].notes.append(
                f"run with --limit {count}: without it a pipe gets only the first {limit:,}"
            )
        print(line(results[-1]), flush=True)
        if not backends.slapd.have_slapd():
            results.append(Measured("migrate SQLite → LDAP", notes=["skipped: no slapd"]))
        elif not has_migrate():
            results.append(
                Measured("migrate SQLite → LDAP", notes=["skipped: `mailwarden migrate` not here"])
            )
        else:
            with ldap_target(work) as target:
                migrate = ["migrate", "--to", str(target), "-q"]
                results.append(run("migrate SQLite → LDAP", [*base, *migrate], timeout, errors))
                results[-1].notes.append("slapd indexes: eq (docs/ldap.md)")
        print(line(results[-1]), flush=True)
    return results


def line(m: Measured) -> str:
    first = f", first line {m.first_line:.2f} s" if m.first_line is not None else ""
    return f"# {m.command}: {m.seconds:.2f} s{first}, peak RSS {m.rss_mib:.0f} MiB"


def table(results: list[Measured], count: int) -> list[str]:
    lines = [
        "| command | seconds | first line | peak RSS | target at 1M accounts | notes |",
        "|---|---|---|---|---|---|",
    ]
    for m in results:
        target = TARGETS.get(m.command)
        verdict = ""
        if target is not None:
            verdict = f"< {target:g} s"
            if m.command.startswith("user list"):
                verdict += f", first line < {FIRST_LINE_TARGET:g} s"
            if count >= MAX_ACCOUNTS and m.exit_code == 0:
                ok = m.seconds < target and (
                    m.first_line is None
                    or not m.command.startswith("user list")
                    or m.first_line < FIRST_LINE_TARGET
                )
                verdict += ": meets" if ok else ": below"
        ran = m.exit_code is not None or m.seconds
        first = f"{m.first_line:.2f} s" if m.first_line is not None else ""
        lines.append(
            f"| {m.command} | {f'{m.seconds:.2f}' if ran else ''} | {first} | "
            f"{f'{m.rss_mib:.0f} MiB' if ran else ''} | {verdict} | {'; '.join(m.notes)} |"
        )
    return lines


def write(results: list[Measured], count: int, command: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            perfdoc.ADMIN,
            "",
            f"Generated by `{command}` (bench/admin_commands.py) on {now}, "
            f"{count:,} accounts in a fresh SQLite directory, {os.cpu_count()} CPUs; "
            "peak RSS is each command's own (wait4). The targets (issue #18) hold at "
            "1,000,000 accounts and are judged only in a run at that size. Memory must "
            "stay flat: rows stream, never all held at once.",
            "",
            *table(results, count),
            "",
        ]
    )
    doc = perfdoc.DOC
    doc.write_text(
        perfdoc.replace_section(doc.read_text() if doc.exists() else "", perfdoc.ADMIN, body)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--write", action="store_true", help="record in docs/performance.md")
    args = parser.parse_args(argv)
    if not 1 <= args.accounts <= MAX_ACCOUNTS:
        parser.error(f"--accounts must be between 1 and {MAX_ACCOUNTS:,}")
    results = measure(args.accounts)
    print(f"\nadmin commands at {args.accounts:,} accounts\n")
    print("\n".join(table(results, args.accounts)))
    if args.write:
        command = "bench/admin_commands.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write(results, args.accounts, command.strip())
        print("# wrote docs/performance.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
