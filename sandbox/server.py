"""Run a sandbox service under uvicorn: in the foreground, or on a thread for tests."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from sandbox.faults import Faults
from sandbox.hospital import load_records, make_hospital_app
from sandbox.payments import make_payments_app

Service = Literal["hospital", "payments"]
STARTUP_SECONDS = 10.0
BACKLOG = 2048


def make_app(
    service: Service,
    records: Path | None = None,
    faults: Faults | None = None,
    failing_accounts: set[str] | None = None,
) -> ASGIApp:
    if service == "hospital":
        return make_hospital_app(load_records(records) if records else None, faults)
    if service == "payments":
        return make_payments_app(faults, failing_accounts)
    raise ValueError(f"unknown sandbox service {service!r}")


def _bind(host: str, port: int) -> socket.socket:
    # Binding here rather than in uvicorn tells us the real port at once when port is 0.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every reply (headers and body written apart) waits ~40 ms on a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening now means a client that connects before uvicorn is up waits in the backlog
    # instead of being refused.
    sock.listen(BACKLOG)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: ASGIApp) -> uvicorn.Server:
    # A short graceful shutdown: a request hung by timeout_next must not hold the exit for long.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def run(
    service: Service,
    host: str = "127.0.0.1",
    port: int = 0,
    records: Path | None = None,
    *,
    faults: Faults | None = None,
    failing_accounts: set[str] | None = None,
) -> None:
    """Serve in the foreground until interrupted, printing the address it listens on."""
    app = make_app(service, records, faults, failing_accounts)
    sock = _bind(host, port)
    print(f"sandbox {service} listening on {_url(host, sock)}", flush=True)
    try:
        _server(app).run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a background thread; yield its base URL once it accepts connections."""
    sock = _bind(host, port)
    server = _server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox-uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.005)
        yield _url(host, sock)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_SECONDS)
        sock.close()
