"""REST plan limits: fixed one-minute windows per account, 429 with Retry-After and TagoIO's
message, one count shared by two API processes through the local Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from sluice.testing.stack import Stack, unique_port

REDIS_DB = 12


def roomy_window(needed: float = 15.0) -> None:
    """Limits count in wall-clock minutes: start well inside one."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.1)


@pytest.fixture(scope="module")
def two_apis(sqlite_stack: Stack) -> Iterator[list[str]]:
    """Two more API processes sharing counts through Redis (db 12, flushed)."""
    redis.Redis(db=REDIS_DB).flushdb()
    urls = []
    for name in ("api-r1", "api-r2"):
        port = unique_port()
        sqlite_stack.add(
            name, SLUICE_API_PORT=str(port), SLUICE_REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}"
        )
        sqlite_stack.processes[name].start()
        urls.append(f"http://127.0.0.1:{port}")
    sqlite_stack.wait_ready(["api-r1", "api-r2"])
    yield urls
    for name in ("api-r1", "api-r2"):
        sqlite_stack.processes.pop(name).stop()


@pytest.fixture
def limited(sqlite_stack: Stack) -> dict[str, Any]:
    roomy_window()
    plan = sqlite_stack.create_plan(
        f"rest-{uuid.uuid4().hex[:6]}",
        based_on="free",
        data_post_per_min=4,
        data_get_per_min=3,
        data_edit_per_min=2,
    )
    account = sqlite_stack.create_account(f"rest-{plan}", plan=plan)
    device = sqlite_stack.create_device(account["token"], name="limited", type="mutable")
    return {"account": account, **device}


def assert_429(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    assert response.json() == {
        "status": False,
        "message": f"Too many requests (Retry-After: {seconds})",
    }
    return seconds


def test_data_routes_are_limited_per_account(sqlite_stack: Stack, limited: dict[str, Any]) -> None:
    with sqlite_stack.client(limited["token"]) as http:
        posts = [http.post("/data", json={"variable": "t", "value": n}) for n in range(5)]
        assert [r.status_code for r in posts[:4]] == [200] * 4
        assert_429(posts[4])
        gets = [http.get("/data", params={"variable": "t"}) for _ in range(4)]
        assert [r.status_code for r in gets[:3]] == [200] * 3
        assert_429(gets[3])
        deletes = [http.delete("/data", params={"variable": "nothing"}) for _ in range(3)]
        assert [r.status_code for r in deletes[:2]] == [200] * 2
        assert_429(deletes[2])


def test_another_account_is_not_affected(sqlite_stack: Stack, limited: dict[str, Any]) -> None:
    other = sqlite_stack.create_account("rest-other", plan="free")
    device = sqlite_stack.create_device(other["token"], name="free-device")
    with sqlite_stack.client(limited["token"]) as http:
        for n in range(5):
            http.post("/data", json={"variable": "t", "value": n})
    with sqlite_stack.client(device["token"]) as http:
        assert http.post("/data", json={"variable": "t", "value": 1}).status_code == 200


def test_two_api_processes_share_one_count(two_apis: list[str], limited: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {limited['token']}"}
    codes = []
    for n in range(6):
        url = two_apis[n % 2]
        codes.append(
            httpx.post(
                f"{url}/data", json={"variable": "t", "value": n}, headers=headers
            ).status_code
        )
        time.sleep(0.3)  # longer than the counters' 0.2 s sync
    assert codes == [200, 200, 200, 200, 429, 429]
