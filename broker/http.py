"""What both gateways share: clients for a URL or for an in-process sandbox, and the retry
policy (transport errors, time-outs and 5xx are retried with backoff; nothing else is)."""

import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TypeVar

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
