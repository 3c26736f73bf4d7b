"""The WorkerStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

Registration is idempotent by name; a worker is online while heard from within the offline
window and not stopped. The window is hours or negative, so no result depends on timing.
"""

from __future__ import annotations

import pytest

from rdev.domain.errors import NotFound
from tests.contract.build_worlds import World, world

__all__ = ["world"]


async def register(w: World, name: str, **changes: object) -> str:
    info: dict[str, object] = {
        "name": name,
        "hostname": "host-" + name,
        "labels": ["gpu"],
        "agents": ["command"],
        "agent_notes": {"command": "ok"},
        "slots": 2,
        "version": "1.0",
    }
    info.update(changes)
    return await w.workers.register(**info)  # type: ignore[arg-type]


async def test_registering_again_under_a_name_updates_the_worker_and_keeps_its_id(
    world: World,
) -> None:
    wid = await register(world, "alpha")
    assert await register(world, "alpha", slots=4, agents=["opencode"]) == wid
    record = await world.workers.get(wid)
    assert (record.id, record.name, record.slots) == (wid, "alpha", 4)
    assert record.agents == ["opencode"] and record.labels == ["gpu"]
    with pytest.raises(NotFound):
        await world.workers.get("no-such-worker")


async def test_workers_are_listed_by_name_online_until_stopped_or_silent(world: World) -> None:
    b = await register(world, "bravo")
    a = await register(world, "alpha")
    listed = await world.workers.list(3600)
    assert [w.name for w in listed] == ["alpha", "bravo"]
    assert all(w.online for w in listed)
    assert listed[1].hostname == "host-bravo" and listed[1].agent_notes == {"command": "ok"}
    await world.workers.touch(b, ["t1", "t2"])
    await world.workers.mark_stopped(a)
    alpha, bravo = await world.workers.list(3600)
    assert not alpha.online and alpha.current_tasks == []
    assert bravo.online and bravo.current_tasks == ["t1", "t2"]
    assert not any(w.online for w in await world.workers.list(-3600))  # all silent too long
    await world.workers.touch(a, [])  # a heartbeat after a stop: back online
    assert (await world.workers.list(3600))[0].online
