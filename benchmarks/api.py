"""Benchmark: the members' API under uvicorn (two workers) on PostgreSQL + Redis, each endpoint
against a reference route served by the same workers:

- `GET /v1/plans/{plan}/announcement` (the current 公示, a closed cycle behind it) against a
  route returning a constant dict;
- `POST /v1/claims` (a bearer token, a fresh Idempotency-Key and claim each time) against a
  route that commits one row and sends one Celery message to the same Redis.

The load comes from this process (not the server's): keep-alive connections driven by asyncio,
HTTP/1.1 written and read by hand so that the client stays cheap beside the server on a small
machine; both sides of a ratio see the same connections, count and request shape, alternating
in rounds after a warm-up. Nothing consumes the messages; they are deleted at the end."""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from benchmarks import charging
from benchmarks.api_app import REFERENCE_PATH, REFERENCE_TABLE, STATIC_PATH
from benchmarks.common import (
    Result,
    empty_broker,
    own_servers,
    proof_keys_of,
    scratch_database,
    worker_env,
)
from broker.app import reconfigure
from broker.database import engine
from broker.migrate import upgrade
from broker.settings import Settings, get_settings
from domain.calendar import next_announcement_day, start_of_day
from domain.db import transaction
from domain.records import Condition, Evidence, Reply
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from tests.servers import free_port

GOAL = 0.5
PLAN = charging.PLAN
# Illnesses the plan's rules decide (no reviewer), so every case reaches the announcement.
CODES = ("C73", "I21.0", "C34.1", "C18.7")
ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
TOKENS = 1000  # members the POSTs are signed for, in turn (at least)
# Claims a member sends in a run, at most: the API lets a member write 60 times a minute.
PER_MEMBER = 30
WARM_UP = 500  # requests per endpoint before the clock starts (fewer on a smaller run)
ANNOUNCEMENT = f"/v1/plans/{PLAN}/announcement"
# The cycle after the charging benchmark's: that one is published and closed (its charges are
# what a 公示 sums up), this one is the current announcement.
NEXT_ANNOUNCE_ON = next_announcement_day(charging.ANNOUNCE_ON + timedelta(days=1))
NEXT_PUBLISH_AT = start_of_day(NEXT_ANNOUNCE_ON)


@dataclass
class Phase:
    """One endpoint's measured requests, pooled over the rounds."""

    endpoint: str
    requests: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0  # this process's CPU seconds while it sent them
    server_cpu: float = 0.0  # the uvicorn workers' CPU seconds meanwhile
    latencies: list[float] | None = None

    def add(self, seconds: float, latencies: list[float], client: float, server: float) -> None:
        self.requests += len(latencies)
        self.seconds += seconds
        self.client_cpu += client
        self.server_cpu += server
        self.latencies = (self.latencies or []) + latencies

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies or [0.0])
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests / self.seconds, 1),
            "p50_ms": round(self.percentile_ms(0.50), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu / self.requests, 3),
            "client_cpu_share": round(self.client_cpu / self.seconds, 2),
        }


# The data: members, a closed cycle, and the current announcement.


def member_ref(n: int) -> str:
    return f"B{n:09d}"  # as charging.add_members names them


def claim_line(tag: str, n: int, ref: str) -> str:
    data = {
        "submission_id": f"{tag}-{n}",
        "member_ref": ref,
        "plan": PLAN,
        "icd10": CODES[n % len(CODES)],
        "diagnosed_on": (charging.TODAY - timedelta(days=10)).isoformat(),
        # Spread over hospitals as cases are: sixty cases a fortnight from one hospital would be
        # flagged (domain.flags.hospital) and wait for a person instead of being announced.
        "hospital": f"广州市第{n % 97 + 1}人民医院",
        "accident": False,
    }
    return json.dumps(data, ensure_ascii=False)


def announce(numbers: range, now: datetime, at: datetime) -> int:
    """A claim for each of these members, decided by the rules at `now`; then the cycle of
    `at` published with them as its cases."""
    for n in numbers:
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(
                session, claim_line("case", n, member_ref(n)), now
            )
            claim_service.accept(session, claim_id, now)
            request = claim_service.evidence_request(session, claim_id)
            found = [Condition(request.icd10, request.diagnosed_on, "active")] if request else []
            claim_service.review_claim(session, claim_id, now, Evidence(Reply.FOUND, found))
            claim_service.schedule(session, claim_id, now)
    with transaction(engine()) as session:
        cycle = cycle_service.publish(session, PLAN, at)
        assert cycle.cases == len(numbers), f"{cycle.cases} cases, expected {len(numbers)}"
        return cycle.id


def prepare(members: int, cases: int, history: bool = True) -> dict:
    """`members` enrolled, a cycle of `cases` announced and closed (every member charged), and
    the next cycle announced with `cases` others: the 公示 the GETs read. Without `history`,
    the first cycle alone, announced: nothing charged yet."""
    db = engine()
    upgrade(db)
    charging.add_members(db, members)
    first = announce(
        range(1, cases + 1), charging.PUBLISH_AT - timedelta(days=1), charging.PUBLISH_AT
    )
    if history:
        charging.close(db)
        current = announce(
            range(cases + 1, 2 * cases + 1), NEXT_PUBLISH_AT - timedelta(days=1), NEXT_PUBLISH_AT
        )
    else:
        current = first
    with db.begin() as connection:
        connection.execute(
            text(f"CREATE TABLE {REFERENCE_TABLE} (id bigserial PRIMARY KEY, raw text NOT NULL)")
        )
        connection.execute(text("ANALYZE"))
        charges = connection.execute(text("SELECT count(*) FROM charge")).scalar_one()
    return {"current": current, "charges": charges}


# Tokens and requests, all made before the clock starts.


def platform_key(folder: Path) -> tuple[Ed25519PrivateKey, Path]:
    """A key standing in for the platform's: its public half is what the API trusts."""
    key = Ed25519PrivateKey.generate()
    path = folder / "platform.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


def tokens(key: Ed25519PrivateKey, refs: Sequence[str]) -> list[str]:
    expires = datetime.now(UTC) + timedelta(hours=2)
    audience = get_settings().api_audience
    return [
        jwt.encode({"sub": ref, "aud": audience, "exp": expires}, key, algorithm="EdDSA")
        for ref in refs
    ]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode()


def posts(path: str, tag: str, count: int, signed: Sequence[tuple[str, str]]) -> list[bytes]:
    """`count` POSTs, each with a body and an Idempotency-Key of its own, signed in turn by
    the members of `signed` (their ref and token) and claiming for them."""
    made = []
    for n in range(count):
        ref, token = signed[n % len(signed)]
        body = claim_line(tag, n, ref).encode()
        made.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                f"Authorization: Bearer {token}\r\nIdempotency-Key: {tag}-{n}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    return made


# The load: keep-alive connections, one request in flight on each.


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line[15:])
        elif line.startswith(b"transfer-encoding:"):
            raise RuntimeError("a chunked response: this client reads Content-Length only")
    return status, await reader.readexactly(length)


async def _drive(port: int, requests: Sequence[bytes], connections: int, expect: int):
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    latencies: list[float] = []
    order = iter(requests)  # shared: each connection takes the next request when it is free

    async def user(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in order:
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status, body = await _response(reader)
            latencies.append(time.perf_counter() - start)
            if status != expect:
                raise RuntimeError(f"{request.split(b' ', 2)[:2]} answered {status}: {body[:500]}")

    start = time.perf_counter()
    await asyncio.gather(*(user(reader, writer) for reader, writer in opened))
    seconds = time.perf_counter() - start
    for _, writer in opened:
        writer.close()
    return seconds, latencies


def send(port: int, requests: Sequence[bytes], connections: int, expect: int, workers: list[int]):
    """Seconds, latencies, this process's CPU seconds and the workers' CPU seconds."""
    cpu, served = time.process_time(), cpu_seconds(workers)
    seconds, latencies = asyncio.run(_drive(port, requests, connections, expect))
    return seconds, latencies, time.process_time() - cpu, cpu_seconds(workers) - served


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def compare(
    port: int,
    workers: list[int],
    figure: tuple[str, Sequence[bytes], int],
    reference: tuple[str, Sequence[bytes], int],
    connections: int,
    rounds: int,
) -> tuple[Phase, Phase]:
    """Warm both up, then alternate reference and figure, `rounds` slices each."""
    phases = Phase(figure[0]), Phase(reference[0])
    warm = min(WARM_UP, len(figure[1]) // 5)
    slices = []
    for _, requests, expect in (figure, reference):
        send(port, requests[:warm], connections, expect, workers)
        measured = requests[warm:]
        size = -(-len(measured) // rounds)
        slices.append([measured[i : i + size] for i in range(0, len(measured), size)])
    for figure_slice, reference_slice in zip(*slices, strict=True):
        for (_, _, expect), phase, part in (
            (reference, phases[1], reference_slice),
            (figure, phases[0], figure_slice),
        ):
            phase.add(*send(port, part, connections, expect, workers))
    return phases


# The server.


def pool_per_worker(connections: int) -> int:
    """Each worker's database pool: as many connections as requests it serves at once, so no
    request of either side waits for one (both sides share the pool)."""
    return -(-connections // WORKERS)


@contextmanager
def uvicorn(settings: Settings, key_file: Path, pool: int) -> Iterator[tuple[int, list[int]]]:
    """`python -m uvicorn benchmarks.api_app:create --factory --workers 2`; yields its port
    and the workers' process ids once both answer."""
    port = free_port()
    log = settings.data_dir / "uvicorn.log"
    command = [
        *(sys.executable, "-m", "uvicorn", "benchmarks.api_app:create", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)),
        *("--log-level", "warning", "--no-access-log"),
    ]
    env = worker_env(settings) | {
        "HUZHU_API_PUBLIC_KEY_FILE": str(key_file),
        "HUZHU_DATABASE_POOL_SIZE": str(pool),
    }
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        workers = wait_for_workers(server, port, log)
        try:
            yield port, workers
        except RuntimeError as error:  # an unexpected answer: the server's log says why
            raise RuntimeError(f"{error}\nuvicorn's log:\n{first_error(log)}") from None
    finally:
        server.terminate()  # uvicorn's supervisor stops its workers on SIGTERM
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def first_error(log: Path) -> str:
    """The log from its first traceback on (or its end): why a request failed."""
    text = log.read_text(errors="replace")
    start = text.find("Traceback")
    return text[start : start + 4000] if start >= 0 else text[-4000:]


def wait_for_workers(server: subprocess.Popen, port: int, log: Path) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start:\n{log.read_text()[-3000:]}")
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        try:
            healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            healthy = False
        if healthy and len(children) >= WORKERS:
            # A worker is listed as soon as it is forked; give the last one time to import.
            time.sleep(1)
            return [int(pid) for pid in children]
        time.sleep(0.2)


# The run.


def run(
    members: int = 100_000,
    cases: int = 30,
    requests: int = 10_000,
    connections: int = 32,
    rounds: int = 3,
    history: bool = True,
) -> list[dict]:
    previous = get_settings()
    with (
        own_servers() as (admin, redis_url),
        scratch_database("api", admin) as url,
        tempfile.TemporaryDirectory(prefix="huzhu-bench-") as folder,
    ):
        key, key_file = platform_key(Path(folder))
        settings = Settings(
            data_dir=Path(folder),
            database_url=url,
            broker_url=redis_url,
            broker_key_prefix=f"huzhu-bench-{os.getpid()}:",
            hospital_url="",
            payments_url="",
            api_public_key_file=key_file,
            **proof_keys_of(Path(folder)),
        )
        reconfigure(settings)
        try:
            made = prepare(members, cases, history)
            first = 2 * cases + 1
            claimants = [member_ref(n) for n in range(first, first + claimant_count(requests))]
            signed = list(zip(claimants, tokens(key, claimants), strict=True))
            claims = posts("/v1/claims", "api", requests, signed)
            written = posts(REFERENCE_PATH, "ref", requests, signed)
            engine().dispose()  # the server's workers have the database to themselves
            load = os.getloadavg()[0]
            with uvicorn(settings, key_file, pool_per_worker(connections)) as (port, workers):
                page = httpx.get(f"http://127.0.0.1:{port}{ANNOUNCEMENT}").json()
                assert page["cycle_id"] == made["current"] and len(page["cases"]) == cases
                reads = compare(
                    port,
                    workers,
                    (f"GET {ANNOUNCEMENT}", [get(ANNOUNCEMENT)] * requests, 200),
                    (f"GET {STATIC_PATH} (constant dict)", [get(STATIC_PATH)] * requests, 200),
                    connections,
                    rounds,
                )
                writes = compare(
                    port,
                    workers,
                    ("POST /v1/claims", claims, 202),
                    (f"POST {REFERENCE_PATH} (one row, one message)", written, 202),
                    connections,
                    rounds,
                )
            stored = stored_counts()
        finally:
            empty_broker(settings)
            engine().dispose()
            reconfigure(previous)
    if stored != (requests, requests):
        raise RuntimeError(f"claims and reference rows stored: {stored}, expected {requests} each")
    setting = (
        f"{connections} keep-alive connections, {requests:,} requests a side "
        f"({min(WARM_UP, requests // 5)} warm-up, then {rounds} alternating rounds); "
        f"uvicorn --workers {WORKERS} on {os.cpu_count()} CPUs, "
        f"{pool_per_worker(connections)} database connections each, "
        f"load average {load:.1f} before"
    )
    return [
        row(
            f"GET announcement ({cases} cases, {made['charges']:,} charges behind it) "
            "vs a constant dict",
            *reads,
            setting,
        ),
        row("POST /v1/claims vs one row and one message", *writes, setting),
    ]


def claimant_count(requests: int) -> int:
    return max(TOKENS, -(-requests // PER_MEMBER))


def stored_counts() -> tuple[int, int]:
    with engine().connect() as connection:
        claims = connection.execute(
            text("SELECT count(*) FROM claim WHERE submission_id LIKE 'api-%'")
        ).scalar_one()
        references = connection.execute(
            text(f"SELECT count(*) FROM {REFERENCE_TABLE}")
        ).scalar_one()
    return claims, references


def row(benchmark: str, figure: Phase, reference: Phase, setting: str) -> dict:
    """One result: seconds for the same count of requests on each side (ratio = reference /
    figure = the endpoint's requests/s over the reference's), with every endpoint's figures."""
    ours, theirs = figure.summary(), reference.summary()
    detail = (
        f"{ours['requests_per_s']:,.0f} req/s (p50 {ours['p50_ms']:.1f} ms, "
        f"p99 {ours['p99_ms']:.1f} ms) against {theirs['requests_per_s']:,.0f} req/s "
        f"(p50 {theirs['p50_ms']:.1f} ms, p99 {theirs['p99_ms']:.1f} ms); server CPU "
        f"{ours['server_cpu_ms_per_request']:.2f} against "
        f"{theirs['server_cpu_ms_per_request']:.2f} ms a request; the client used "
        f"{ours['client_cpu_share']:.0%} and {theirs['client_cpu_share']:.0%} of a CPU; {setting}"
    )
    result = Result(
        benchmark=benchmark,
        figure=round(figure.seconds, 3),
        reference=round(reference.seconds, 3),
        goal=GOAL,
        detail=detail,
    )
    return result.as_dict() | {"endpoints": [ours, theirs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000, help="enrolled and charged")
    parser.add_argument("--cases", type=int, default=30, help="cases in each announcement")
    parser.add_argument("--requests", type=int, default=10_000, help="per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="announce the first cycle only: no closed cycle, no charges behind the 公示",
    )
    args = parser.parse_args()
    claimants = claimant_count(args.requests)
    if args.members < 2 * args.cases + claimants:
        parser.error(f"--members must be at least 2 × --cases + {claimants} (the claimants)")
    sizes = (args.members, args.cases, args.requests, args.connections, args.rounds)
    for result in run(*sizes, history=not args.no_history):
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
