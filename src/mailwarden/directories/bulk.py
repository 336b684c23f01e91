"""What a bulk write (``Directory.bulk_upsert``) stores, and how its report counts.

Pure rules every backend applies, so that all of them settle a batch alike:

* :func:`settle_batch` - which accounts of a batch are written (a uid given twice:
  the later one with ``replace``, else the first), checked by the backend's rule;
* :func:`settle_existing` - what happens to uids the directory already has;
* :func:`judge_clashes` - address clashes judged on the outcome (an address may move
  from one replaced account to another), for backends that check before writing;
* :func:`write_one_by_one` and :func:`without_refused` - ``skip_refused``: accounts
  that clash are left out, the rest is written, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace as _replace
from typing import TypeVar

from mailwarden.directories.base import BulkReport, Refusal, login_key
from mailwarden.errors import AccountExists, InvalidAccount
from mailwarden.model import Account

T = TypeVar("T")


def chunked(accounts: Iterable[Account], size: int) -> Iterator[list[Account]]:
    """``accounts`` in lists of at most ``size``: a bulk write of a million accounts
    holds one chunk at a time."""
    chunk: list[Account] = []
    for account in accounts:
        chunk.append(account)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def combined(a: BulkReport, b: BulkReport) -> BulkReport:
    """The report of two bulk writes made one after the other."""
    return BulkReport(
        created=a.created + b.created,
        replaced=a.replaced + b.replaced,
        skipped=a.skipped + b.skipped,
        refused=(*a.refused, *b.refused),
    )


def settle_batch(
    accounts: Iterable[Account],
    *,
    replace: bool,
    check: Callable[[Account], object],
    skip_invalid: bool = False,
) -> tuple[dict[str, Account], BulkReport]:
    """The accounts a bulk write stores, by uid key, and its report so far.

    Accounts are checked with ``check`` (InvalidAccount; with ``skip_invalid`` they
    are left out and listed in the report's ``refused``). A uid given twice counts as created
    then replaced (the later account wins) with ``replace``, else as created then
    skipped (the first one stays). Every account is counted as created until
    :func:`settle_existing` has compared the batch with the directory.
    """
    batch: dict[str, Account] = {}
    created = replaced = skipped = 0
    refused: list[Refusal] = []
    for account in accounts:
        try:
            check(account)
        except InvalidAccount as exc:
            if not skip_invalid:
                raise
            refused.append(Refusal(uid=str(getattr(account, "uid", "")), message=str(exc)))
            continue
        key = login_key(account.uid)
        if key not in batch:
            batch[key] = account
            created += 1
        elif replace:
            batch[key] = account
            replaced += 1
        else:
            skipped += 1
    report = BulkReport(created=created, replaced=replaced, skipped=skipped, refused=(*refused,))
    return batch, report


def settle_existing(
    batch: dict[str, Account], existing: Mapping[str, T], report: BulkReport, *, replace: bool
) -> tuple[BulkReport, list[T]]:
    """Account for the batch's uids that the directory already has.

    ``existing`` maps those uid keys to the backend's handle on the stored
    account. With ``replace`` they are replaced (the handles returned must be
    removed before the batch is inserted); without, they leave the batch as
    skipped. Address clashes are then judged on the outcome, not on the order of
    the batch: an address may move from one replaced account to another.
    """
    obsolete: list[T] = []
    created, replaced, skipped = report.created, report.replaced, report.skipped
    for key, handle in existing.items():
        created -= 1
        if replace:
            obsolete.append(handle)
            replaced += 1
        else:
            del batch[key]
            skipped += 1
    report = BulkReport(created=created, replaced=replaced, skipped=skipped, refused=report.refused)
    return report, obsolete


def write_one_by_one(
    batch: Mapping[str, Account],
    replacing: set[str],
    write_one: Callable[[str, Account, bool], None],
) -> dict[str, Refusal]:
    """Write each account of ``batch`` (by uid key) with ``write_one(key, account,
    replaces)``, which must raise AccountExists and leave nothing behind on a clash
    (the stored account it would replace included). Accounts refused are tried again
    while a pass makes progress: a later replacement may free an address. Returns
    the accounts still refused, by uid key (``bulk_upsert(skip_refused=True)``)."""
    pending = list(batch.items())
    refused: dict[str, Refusal] = {}
    while pending:
        refused, left = {}, []
        for key, account in pending:
            try:
                write_one(key, account, key in replacing)
            except AccountExists as exc:
                refused[key] = Refusal(uid=account.uid, message=str(exc))
                left.append((key, account))
        if len(left) == len(pending):
            break
        pending = left
    return refused


def without_refused(
    report: BulkReport, refused: Mapping[str, Refusal], replacing: set[str]
) -> BulkReport:
    """``report`` with the ``refused`` accounts counted as refused, not written."""
    if not refused:
        return report
    replaced = sum(1 for key in refused if key in replacing)
    return _replace(
        report,
        created=report.created - (len(refused) - replaced),
        replaced=report.replaced - replaced,
        refused=(*report.refused, *(refused[key] for key in sorted(refused))),
    )


def judge_clashes(
    batch: Mapping[str, Account],
    stored: Mapping[str, set[str]],
    replacing: set[str],
    *,
    skip: bool,
) -> dict[str, Refusal]:
    """The batch accounts (by uid key) whose addresses clash, judged on the outcome:
    what stays stored plus the batch, so an address can move between replaced
    accounts. Without ``skip`` the first clash raises AccountExists. With it, a
    refused account's stored entry stays, keeping its addresses, so the judgement
    is repeated until no more accounts are refused."""
    refused: dict[str, Refusal] = {}
    while True:
        gone = replacing - set(refused)
        taken = {a: next(iter(owners)) for a, owners in stored.items() if not owners <= gone}
        found: dict[str, Refusal] = {}
        for key, account in batch.items():
            if key in refused:
                continue
            addresses = [a for a in (account.mail, *account.alternate_addresses) if a]
            clash = next((a for a in addresses if taken.get(login_key(a), key) != key), None)
            if clash is None:
                taken.update((login_key(a), key) for a in addresses)
                continue
            message = f"address {clash!r} already belongs to {taken[login_key(clash)]!r}"
            if not skip:
                raise AccountExists(message)
            found[key] = Refusal(uid=account.uid, message=message)
        if not found:
            return refused
        refused.update(found)
