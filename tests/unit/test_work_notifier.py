"""Which waiting claimers a queued build wakes (in-process and from a NOTIFY payload)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdev.adapters.db.engine import Database
from rdev.adapters.db.notify import WorkNotifier, wake_payload


@pytest.fixture
def n(tmp_path: Path) -> WorkNotifier:
    """A notifier on an (unopened) SQLite database: no LISTEN, wake-ups in process only."""
    return WorkNotifier(Database(f"sqlite+aiosqlite:///{tmp_path / 'rdev.db'}"))


async def test_a_queued_build_wakes_only_the_longest_waiting_claimer_able_to_take_it(
    n: WorkNotifier,
) -> None:
    other_agent = n.waiter(["opencode"], [])
    missing_label = n.waiter(["command"], ["linux"])
    first = n.waiter(["command"], ["gpu", "linux"])
    second = n.waiter(["command", "opencode"], ["gpu", "linux"])

    n.wake_for("command", ["gpu"])
    assert first.event.is_set()
    assert not any(w.event.is_set() for w in (other_agent, missing_label, second))

    n.wake_for("command", ["gpu"])  # the next build goes to the next one in line
    assert second.event.is_set()
    n.wake_for("command", ["gpu"])  # nobody left who can take it: nobody is woken
    assert not other_agent.event.is_set() and not missing_label.event.is_set()


async def test_a_forgotten_waiter_is_never_picked(n: WorkNotifier) -> None:
    gone = n.waiter(["command"], [])
    waiting = n.waiter(["command"], [])
    n.forget(gone)
    n.wake_for("command", [])
    assert waiting.event.is_set() and not gone.event.is_set()


async def test_wake_wakes_every_waiter(n: WorkNotifier) -> None:
    waiters = [n.waiter(["command"], []), n.waiter(["opencode"], ["x"])]
    n.wake()
    assert all(w.event.is_set() for w in waiters)


async def test_a_notify_from_another_replica_wakes_like_a_local_submit(n: WorkNotifier) -> None:
    plain = n.waiter(["command"], [])
    labelled = n.waiter(["command"], ["gpu", "linux"])
    n._on_notify(wake_payload("command", "gpu,linux"))
    assert labelled.event.is_set() and not plain.event.is_set()
    n._on_notify(wake_payload("command", ""))
    assert plain.event.is_set()
    everyone = [n.waiter(["command"], []), n.waiter(["opencode"], [])]
    n._on_notify("")  # a reaper's requeue (or an older replica): wake everyone
    assert all(w.event.is_set() for w in everyone)


async def test_several_claimable_builds_wake_as_many_waiters(n: WorkNotifier) -> None:
    waiters = [n.waiter(["command"], []) for _ in range(4)]
    n.wake_for("command", [], count=3)
    assert [w.event.is_set() for w in waiters] == [True, True, True, False]


async def test_a_full_batch_passes_the_wake_to_one_waiter_offering_the_same_agent(
    n: WorkNotifier,
) -> None:
    other = n.waiter(["opencode"], [])
    same = [n.waiter(["command", "opencode"], []), n.waiter(["command"], [])]
    n.wake_like(["command"])
    assert same[0].event.is_set()
    assert not same[1].event.is_set() and not other.event.is_set()
