"""What both gateways share: clients for a URL or for an in-process sandbox, and the retry
policy (transport errors, time-outs and 5xx are retried with backoff; nothing else is)."""

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from broker.settings import get_settings

T = TypeVar("T")

# httpx logs every request line at INFO, and our query strings name a patient and a diagnosis.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


class Unavailable(Exception):
    """The service did not answer usefully after every attempt; the task retries later."""


class ServerError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path}: {response.status_code}"
        )


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default context, made once per process: httpx builds a new one for every client,
    loading the whole CA bundle each time (about 40 ms here), and a task opens a client per run."""
    return httpx.create_ssl_context()


def client(url: str, sandbox_app: Callable[[], object]) -> httpx.AsyncClient:
    """A client for the service at `url`, or for its sandbox in this process when `url` is empty."""
    timeout = httpx.Timeout(get_settings().http_timeout)
    if url:
        return httpx.AsyncClient(base_url=url, timeout=timeout, verify=tls_context())
    transport = httpx.ASGITransport(app=sandbox_app())  # type: ignore[arg-type]
    return httpx.AsyncClient(
        transport=transport, base_url="http://sandbox", timeout=timeout, verify=tls_context()
    )


@dataclass
class _KeptLoop:
    """A worker process's event loop, with a client per service made on it."""

    pid: int
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    clients: dict[tuple[str, Callable], httpx.AsyncClient] = field(default_factory=dict)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.runner.get_loop()


_kept: _KeptLoop | None = None


def run(call: Coroutine[Any, Any, T]) -> T:
    """Run a gateway call from a task, on an event loop this process keeps from task to task.

    There the gateways keep one client per service, and the clients their connections:
    asyncio.run would build a loop, a client and new connections for every call, about half
    the CPU of a review's two hospital requests."""
    global _kept
    if _kept is None or _kept.pid != os.getpid():  # a forked child makes its own
        _kept = _KeptLoop(os.getpid())
    return _kept.runner.run(call)


@asynccontextmanager
async def connected(
    url: str, sandbox_app: Callable[[], object]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the service: the one kept for it when the call came through `run`; else
    (a command's own asyncio.run, a test's loop) a new one, closed after use."""
    kept = _kept
    if kept is None or kept.pid != os.getpid() or asyncio.get_running_loop() is not kept.loop:
        async with client(url, sandbox_app) as http:
            yield http
        return
    service = (url, sandbox_app)  # with no URL, both gateways would share the empty one
    if service not in kept.clients:
        kept.clients[service] = client(url, sandbox_app)
    yield kept.clients[service]


def _transient(error: BaseException) -> bool:
    return isinstance(error, httpx.TransportError | ServerError)


async def with_retries(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """The response of `call`, retrying transport errors and 5xx; raises Unavailable at the end."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(get_settings().http_attempts),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                response = await call()
                if response.status_code >= 500:
                    raise ServerError(response)
                return response
    except ServerError as error:
        raise Unavailable(str(error)) from error
    except httpx.TransportError as error:
        # The class only: a transport error's text may quote the URL, and ours carry a patient.
        raise Unavailable(type(error).__name__) from error
    raise AssertionError("unreachable")  # pragma: no cover
