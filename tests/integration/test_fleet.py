"""The fleet as an operator starts it (`huzhu fleet up`), watched through Flower's HTTP API, and
the members' API it serves with the platform's key."""

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.scenario import CLAIMS, CLOSE_AT, CRITICAL, PUBLISH_AT, membership
from tests.integration.support import Stack, huzhu

pytestmark = pytest.mark.slow
AUTH = ("ops", "test-only-password")
QUEUES = ["intake", "review", "announce", "cycle", "payments"]
PERSONAL = ["C0005", "C73", "I21.0", "吴小漫", "广州市第一人民医院", "1995-01-01"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Fleet(NamedTuple):
    flower: str
    api: str


def public_pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def platform_key() -> Ed25519PrivateKey:
    """Stands in for the platform's signing key; the fleet is given its public half."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def fleet(postgres_stack: Stack, platform_key, tmp_path) -> Iterator[Fleet]:
    ports = {name: free_port() for name in ("flower", "api", "hospital", "payments")}
    env = postgres_stack.env | {
        "FLOWER_BASIC_AUTH": ":".join(AUTH),
        "HUZHU_API_PUBLIC_KEY_FILE": str(public_pem(platform_key, tmp_path / "platform.pem")),
        # An idle worker waits out the whole soft shutdown (30 s) when the fleet stops.
        "HUZHU_WORKER_SOFT_SHUTDOWN_TIMEOUT": "3",
    }
    env.pop("HUZHU_HOSPITAL_URL"), env.pop("HUZHU_PAYMENTS_URL")
    command = [
        sys.executable,
        "-m",
        "cli",
        "fleet",
        "up",
        "--json",
        f"--flower-port={ports['flower']}",
        f"--api-port={ports['api']}",
        f"--hospital-port={ports['hospital']}",
        f"--payments-port={ports['payments']}",
    ]
    with (tmp_path / "fleet.out").open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    postgres_stack.settings = postgres_stack.settings.model_copy(
        update={
            "hospital_url": f"http://127.0.0.1:{ports['hospital']}",
            "payments_url": f"http://127.0.0.1:{ports['payments']}",
        }
    )
    try:
        yield Fleet(f"http://127.0.0.1:{ports['flower']}", f"http://127.0.0.1:{ports['api']}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0 or process.returncode == -signal.SIGTERM
        print((tmp_path / "fleet.out").read_text()[-2000:])


async def poll(check, timeout: float, what: str):
    for _ in range(int(timeout / 0.5)):
        try:
            result = await check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


async def test_flower_sees_every_queue_the_chain_and_no_personal_data(
    postgres_stack, fleet, tmp_path
):
    async with httpx.AsyncClient(base_url=fleet.flower, auth=AUTH, timeout=10) as flower:

        async def workers_online():
            workers = (await flower.get("/api/workers", params={"refresh": "1"})).json()
            queues = {q["name"] for w in workers.values() for q in w.get("active_queues", [])}
            return workers if set(QUEUES) <= queues else None

        await poll(workers_online, 60, "a worker online for every queue")
        members = tmp_path / "members.csv"
        members.write_text(
            "member_ref,plan,birth_date,sex,province,joined_at,name\n"
            + "".join(
                f"{m.member_ref},{m.plan},{m.birth_date},{m.sex},{m.province},"
                f"{m.joined_at.isoformat()},{m.name}\n"
                for m in membership(30, 0)
            ),
            encoding="utf-8",
        )
        huzhu(postgres_stack, "members", "import", str(members))
        claims = tmp_path / "claims.jsonl"
        claims.write_text("\n".join(CLAIMS[:2]) + "\n", encoding="utf-8")
        huzhu(postgres_stack, "claims", "submit", str(claims))

        async def chain_done():
            tasks = (await flower.get("/api/tasks")).json()
            names = [(t["name"], t["state"]) for t in tasks.values()]
            done = [n for n, state in names if state == "SUCCESS"]
            return (
                tasks
                if all(
                    done.count(f"huzhu.{s}") >= 2
                    for s in ("accept_claim", "review_claim", "announce_claim")
                )
                else None
            )

        tasks = await poll(chain_done, 60, "the claim chains finishing")
        for task in tasks.values():
            shown = json.dumps(task, ensure_ascii=False)
            assert not [word for word in PERSONAL if word in shown], task["name"]
            args = task.get("args")
            if task["name"] in ("huzhu.accept_claim", "huzhu.review_claim"):
                assert args and args.strip("()[], ").isdigit(), args

        huzhu(
            postgres_stack, "cycle", "publish", "--plan", CRITICAL, "--at", PUBLISH_AT.isoformat()
        )
        closed = huzhu(
            postgres_stack,
            "cycle",
            "close",
            "--plan",
            CRITICAL,
            "--at",
            CLOSE_AT.isoformat(),
            "--json",
        )
        assert json.loads(closed.stdout)["status"] == "closed"
        metrics = await flower.get("/metrics")
        assert metrics.status_code == 200 and "flower_events_total" in metrics.text
        assert (await flower.get("/healthcheck")).text == "OK"


async def test_the_api_answers_on_the_fleet_and_trusts_only_the_platforms_key(
    postgres_stack, fleet, platform_key, tmp_path
):
    def token(key: Ed25519PrivateKey) -> dict[str, str]:
        claims = {
            "sub": "M0000001",
            "aud": postgres_stack.settings.api_audience,
            "exp": datetime.now(UTC) + timedelta(minutes=5),
        }
        return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='EdDSA')}"}

    async with httpx.AsyncClient(base_url=fleet.api, timeout=10) as api:

        async def healthy():
            return (await api.get("/healthz")).status_code == 200

        await poll(healthy, 60, "the API answering /healthz")
        printed, _ = json.JSONDecoder().raw_decode((tmp_path / "fleet.out").read_text())
        assert (printed["api"], printed["flower"]) == (fleet.api, fleet.flower)
        plans = await api.get("/v1/plans", headers=token(platform_key))
        assert plans.status_code == 200
        assert CRITICAL in {plan["code"] for plan in plans.json()}
        assert (await api.get("/v1/claims/x")).status_code == 401
        # The platform's token is accepted (no such claim), another key's is not.
        assert (await api.get("/v1/claims/x", headers=token(platform_key))).status_code == 404
        stranger = token(Ed25519PrivateKey.generate())
        assert (await api.get("/v1/claims/x", headers=stranger)).status_code == 401
