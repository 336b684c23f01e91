"""``migrate``: copy every account of this config's directory into another config's.

The copy itself is :mod:`mailwarden.directories.migration`'s (batches, idempotent
writes, refusals); the rule that refuses a directory copied onto itself is
:mod:`mailwarden.directories.places`'. Here: the options, opening both directories,
the progress line on stderr and the report.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import click

from mailwarden import confignames
from mailwarden.app import open_directory
from mailwarden.cli.common import (
    EX_CONFIG,
    EX_DATAERR,
    EX_TEMPFAIL,
    EX_USAGE,
    _config,
    _missing,
    fail,
    main,
    out,
)
from mailwarden.config import Config
from mailwarden.directories.base import Refusal
from mailwarden.directories.migration import (
    BATCH_SIZE,
    MAX_BATCH_SIZE,
    MigrationProgress,
    migrate,
)
from mailwarden.directories.places import same_accounts
from mailwarden.errors import AccountError, ConfigError, DirectoryMissing, TemporaryFailure
from mailwarden.loop import tune_gc

#: Ctrl-C, as shells report a process ended by SIGINT.
EX_INTERRUPTED = 130


def describe(progress: MigrationProgress) -> str:
    """``12,000/20,000 accounts (60%), 8,123/s, 2 refused``: a progress line's text."""
    share = f" ({100 * progress.read // progress.total}%)" if progress.total else ""
    refused = f", {progress.refused:,} refused" if progress.refused else ""
    return f"{progress.read:,}/{progress.total:,} accounts{share}, {progress.rate:,.0f}/s{refused}"


class ProgressLine:
    """The copy's progress on ``stream``: on a terminal one line rewritten in place,
    elsewhere one line per report; at most one report per ``interval`` seconds, and
    none unless ``enabled``. Refused accounts are always written, one line each, as
    their batch is written (a million of them are never held to be listed at the end).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        terminal: bool,
        enabled: bool,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._terminal = terminal
        self._enabled = enabled
        self._interval = interval
        self._clock = clock
        self._shown_at: float | None = None
        self._showing = False
        self.last: MigrationProgress | None = None

    def batch(self, progress: MigrationProgress, refused: Sequence[Refusal]) -> None:
        """A batch is done (migration.OnBatch)."""
        self.last = progress
        for refusal in refused:
            self._write(f"refused {refusal.uid}: {refusal.message}\n")
        now = self._clock()
        if self._enabled and (self._shown_at is None or now - self._shown_at >= self._interval):
            self._shown_at = now
            self._show(progress)

    def finish(self) -> None:
        """End the in-place line (the report follows on stdout)."""
        if self._showing:
            self._stream.write("\n")
            self._stream.flush()
            self._showing = False

    def _show(self, progress: MigrationProgress) -> None:
        text = f"migrating: {describe(progress)}"
        if self._terminal:
            self._stream.write(f"\r{text}\x1b[K")
            self._showing = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def _write(self, line: str) -> None:
        if self._showing:
            self._stream.write("\r\x1b[K")
            self._showing = False
        self._stream.write(line)
        self._stream.flush()


def report(progress: MigrationProgress) -> str:
    """The final report (stdout)."""
    took = f"in {progress.elapsed:.1f} s ({progress.rate:,.0f} accounts/s)"
    if progress.dry_run:
        return (
            f"dry run: {progress.read} account(s) read {took}: {progress.created} would be "
            f"created, {progress.replaced} replaced, {progress.unchanged} unchanged; "
            "nothing written (what the target refuses is only known by writing)"
        )
    return (
        f"migrated {progress.read} account(s): {progress.created} created, "
        f"{progress.replaced} replaced, {progress.unchanged} unchanged, "
        f"{progress.refused} refused, {took}"
    )


@main.command("migrate")
@click.option(
    "--to",
    "target_path",
    required=True,
    metavar="CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help='Config file of the directory to copy into (e.g. one with backend = "ldap").',
)
@click.option(
    "--batch",
    "batch_size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=BATCH_SIZE,
    show_default=True,
    help="Accounts read and written together.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Write only the accounts that differ from the target's (a rerun after an "
    "interruption, a final catch-up).",
)
@click.option(
    "--dry-run", is_flag=True, help="Write nothing; count what would be created and replaced."
)
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="Progress on stderr, at most once a second (default: only on a terminal).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress (--no-progress).")
@click.pass_context
def migrate_command(
    ctx: click.Context,
    target_path: str,
    batch_size: int,
    resume: bool,
    dry_run: bool,
    show_progress: bool | None,
    quiet: bool,
) -> None:
    """Copy every account of this config's directory into CONFIG's directory.

    Any direction between the directories (SQLite, LDAP). Accounts are read and
    written in batches, so memory stays flat; each batch replaces what the target
    has under the same uids, so running the command again after an interruption
    completes the copy without duplicates. Password values are copied as stored.
    Accounts the target refuses (an address another account holds, a value it
    cannot store) are listed with the reason and the others copied; the exit status
    is then 65. A failure of either directory exits 75 (run the command again).
    Accounts only the target has are left alone. The target must exist (SQLite:
    'mailwarden -c CONFIG init'); copying a directory onto itself is refused (exit 2).
    """
    source = _config(ctx)
    try:
        target = confignames.load(target_path)
    except ConfigError as exc:
        fail(str(exc), EX_CONFIG)
    if (why := same_accounts(source, target)) is not None:
        fail(f"refusing to migrate a directory onto itself: {why}", EX_USAGE)
    enabled = (show_progress if show_progress is not None else sys.stderr.isatty()) and not quiet
    line = ProgressLine(sys.stderr, terminal=sys.stderr.isatty(), enabled=enabled)
    opening = source  # whose directory a DirectoryMissing is about

    async def go() -> MigrationProgress:
        nonlocal opening
        from_directory = await open_directory(source)
        try:
            opening = target
            to_directory = await open_directory(target)
            try:
                return await migrate(
                    from_directory,
                    to_directory,
                    batch_size=batch_size,
                    resume=resume,
                    dry_run=dry_run,
                    on_batch=line.batch,
                )
            finally:
                await to_directory.close()
        finally:
            await from_directory.close()

    tune_gc()
    try:
        final = asyncio.run(go())
    except DirectoryMissing as exc:
        line.finish()
        if opening is source:
            _missing(ctx, exc)
        fail(f"{_named(target)}: {exc}", EX_CONFIG)
    except TemporaryFailure as exc:
        line.finish()
        fail(f"temporary failure: {exc}; {_so_far(line.last)}", EX_TEMPFAIL)
    except AccountError as exc:
        line.finish()
        fail(f"{exc}; {_so_far(line.last)}")
    except KeyboardInterrupt:
        line.finish()
        fail(f"interrupted; {_so_far(line.last)}", EX_INTERRUPTED)
    line.finish()
    out.print(report(final), soft_wrap=True)
    if final.refused:
        sys.exit(EX_DATAERR)


def _named(config: Config) -> str:
    return f"{config.source} (the --to config)"


def _so_far(progress: MigrationProgress | None) -> str:
    done = 0 if progress is None else progress.created + progress.replaced
    return (
        f"{done} account(s) were written before it; run the same command again to "
        "complete the copy (--resume skips what is already there)"
    )
