"""The members' API for tests: served over real HTTP on loopback, and tokens as the platform
would sign them (the embedded default's own key, or on the fleet a test key configured as the
platform's)."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from api.app import create_app
from api.auth import mint
from broker.app import reconfigure
from broker.settings import get_settings
from tests.servers import free_port

Tokens = Callable[..., dict[str, str]]


@contextmanager
def serving(app: FastAPI | None = None) -> Iterator[httpx.Client]:
    port = free_port()
    config = uvicorn.Config(app or create_app(), port=port, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(request) -> Tokens:
    """`tokens(member_ref, *roles)`: headers with a valid token for the stack under test
    (the test's `stack`, `postgres_stack` or `sqlite_stack`)."""
    name = next(n for n in ("stack", "postgres_stack", "sqlite_stack") if n in request.fixturenames)
    stack = request.getfixturevalue(name)
    if stack.name == "sqlite":
        return lambda ref, *roles: bearer(mint(get_settings(), ref, set(roles)))
    platform = Ed25519PrivateKey.generate()
    key_file = stack.settings.data_dir / "platform.pem"
    key_file.write_bytes(
        platform.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    reconfigure(get_settings().model_copy(update={"api_public_key_file": key_file}))

    def signed(ref: str, *roles: str) -> dict[str, str]:
        claims = {
            "sub": ref,
            "aud": get_settings().api_audience,
            "exp": datetime.now(UTC) + timedelta(minutes=30),
            "roles": list(roles),
        }
        return bearer(jwt.encode(claims, platform, algorithm="EdDSA"))

    return signed


def at_once(n: int, work: Callable[[int], object]) -> list:
    """`work(i)` for i < n, in n threads released together."""
    out: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out
