"""Test helpers: a live sandbox server on a real socket with an httpx client pointed at it."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp

from sandbox.server import serving


@asynccontextmanager
async def live(app: ASGIApp, timeout: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    with serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            yield client


def in_process(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def set_faults(client: httpx.AsyncClient, **switches: Any) -> dict[str, Any]:
    response = await client.post("/_sandbox/faults", json=switches)
    assert response.status_code == 200, response.text
    return response.json()
