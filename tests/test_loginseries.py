"""The last hour of logins per 10 s by service and outcome (the web page's chart)."""

from __future__ import annotations

from mailwarden.loginseries import SPAN, STEP, LoginSeries
from mailwarden.metrics import Metrics
from mailwarden.model import Accepted, Account, Denied, DenyReason, Unavailable
from tests.helpers import attempt


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


START = 1_800_000_000.0  # a multiple of STEP


def test_each_login_lands_in_its_10_second_bucket_by_service_and_outcome() -> None:
    clock = Clock(START + 3)
    series = LoginSeries(clock=clock)
    series.add("imap", "accepted")
    series.add("imap", "accepted")
    series.add("smtp", "denied")
    clock.now = START + STEP + 9.9
    series.add("imap", "accepted")
    snap = series.snapshot()
    slots = SPAN // STEP
    assert (snap.step, snap.buckets) == (STEP, slots)
    # The last bucket is the one filling now; the hour ends with it.
    assert snap.start == START + STEP - (slots - 1) * STEP
    imap = snap.counts["imap"]["accepted"]
    assert len(imap) == slots
    assert imap[-2:] == [2, 1]
    assert sum(imap) == 3
    assert snap.counts["smtp"] == {"denied": [0] * (slots - 2) + [1, 0]}


def test_logins_older_than_an_hour_are_left_out_and_forgotten() -> None:
    clock = Clock(START)
    series = LoginSeries(clock=clock)
    series.add("imap", "accepted")
    clock.now = START + SPAN - STEP  # still within the hour: the first bucket
    assert series.snapshot().counts["imap"]["accepted"][0] == 1
    clock.now = START + SPAN
    assert series.snapshot().counts == {}


def test_memory_is_bounded_by_the_buckets_of_an_hour() -> None:
    clock = Clock(START)
    series = LoginSeries(clock=clock)
    for i in range(3 * SPAN // STEP):
        clock.now = START + i * STEP
        series.add("imap", "accepted")
    assert len(series._buckets) == SPAN // STEP
    assert sum(series.snapshot().counts["imap"]["accepted"]) == SPAN // STEP


def test_metrics_count_each_decision_under_the_bounded_service_labels() -> None:
    clock = Clock(START)
    metrics = Metrics(services=("imap",), clock=clock)
    account = Account(uid="alice")
    metrics.auth(attempt("alice", service="imap"), Accepted(user="alice", account=account), 0.01)
    metrics.auth(attempt("alice", service="IMAP"), Denied(reason=DenyReason.CREDENTIALS), 0.01)
    metrics.auth(attempt("alice", service="made-up-1"), Denied(reason=DenyReason.BLOCKED), 0.01)
    metrics.auth(attempt("alice", service="made-up-2"), Unavailable(detail="down"), 0.01)
    counts = {
        service: {outcome: sum(row) for outcome, row in outcomes.items()}
        for service, outcomes in metrics.series.snapshot().counts.items()
    }
    assert counts == {
        "imap": {"accepted": 1, "denied": 1},
        "other": {"blocked": 1, "unavailable": 1},
    }
