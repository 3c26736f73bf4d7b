from tests.factories import create_project, register_worker, submit


async def test_submit_claim_complete_roundtrip(client):
    p = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    r = await client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 1})
    assert r.status_code == 200, r.text
    [task] = r.json()
    assert task["task_id"] == b["task_id"]
    r = await client.post(
        f"/workers/{wid}/complete/{task['task_id']}",
        json={"lease_token": task["lease_token"], "result": {"success": True, "output": "ok"}},
    )
    assert r.status_code == 200, r.text
    got = (await client.get(f"/builds/{b['task_id']}")).json()
    assert got["status"] == "completed"
    ev = (await client.get(f"/builds/{b['task_id']}/events")).json()
    assert [e["to"] for e in ev] == ["pending", "running", "completed"]
