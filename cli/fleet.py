"""`huzhu fleet up`: the compose topology as local processes, for a machine without Docker.

One worker per queue, exactly one beat, the members' API, Flower, and the two sandboxes, against
the configured database and broker; stopped together, workers first given time for a warm
shutdown.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from broker.database import upgrade
from broker.settings import Settings, get_settings
from cli.output import console, fail, print_json, proof_keys, table

fleet_app = typer.Typer(help="Run the worker fleet as local processes.", no_args_is_help=True)

# (concurrency, prefetch) per queue, as in docker-compose.yml: intake and announce are short
# database steps, a few prefetched; review waits on the hospital, so more children; cycle and
# payments move money in large set-based steps; long, remote or money steps prefetch 1.
WORKERS = {
    "intake": (4, 4),
    "review": (8, 1),
    "announce": (4, 4),
    "cycle": (2, 1),
    "payments": (4, 1),
}
# Workers stop first: SIGTERM remapped to a cold shutdown gives running tasks the soft-shutdown
# timeout (30 s), then hands their messages back; the rest of the fleet stops after.
GRACE_SECONDS = 45
# Several API processes, as in compose (which runs 4), so nothing works here that works in one
# process only; two are enough on one machine.
API_WORKERS = 2


def _commands(
    flower_port: int, api_port: int, hospital_port: int, payments_port: int, sandboxes: bool
) -> dict:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "workers"]
    commands = {
        f"worker-{queue}": [
            *celery,
            "worker",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "-E",
            "-l",
            "info",
            "-c",
            str(concurrency),
            "--prefetch-multiplier",
            str(prefetch),
        ]
        for queue, (concurrency, prefetch) in WORKERS.items()
    }
    commands["beat"] = [*celery, "beat", "-l", "info"]
    commands["api"] = [
        *(python, "-m", "uvicorn", "api.app:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(api_port), "--workers", str(API_WORKERS)),
        "--no-access-log",  # the API's own names the member and nothing personal
    ]
    commands["flower"] = [
        *celery,
        "flower",
        "--address=127.0.0.1",
        f"--port={flower_port}",
        "--persistent=True",
        f"--db={get_settings().data_dir / 'flower.db'}",
        # No args, kwargs or result columns: they are ids here, but nothing else ever shows.
        "--tasks_columns=name,uuid,state,received,started,runtime,worker",
    ]
    if sandboxes:
        commands["sandbox-hospital"] = [
            python,
            "-m",
            "sandbox",
            "hospital",
            "--port",
            str(hospital_port),
        ]
        commands["sandbox-payments"] = [
            python,
            "-m",
            "sandbox",
            "payments",
            "--port",
            str(payments_port),
        ]
    return commands


@fleet_app.command("up")
def up(
    flower_port: Annotated[int, typer.Option(help="Flower's port on 127.0.0.1.")] = 5555,
    api_port: Annotated[int, typer.Option(help="The members' API's port on 127.0.0.1.")] = 8000,
    hospital_port: Annotated[int, typer.Option(help="The hospital sandbox's port.")] = 8081,
    payments_port: Annotated[int, typer.Option(help="The payments sandbox's port.")] = 8082,
    sandboxes: Annotated[
        bool, typer.Option(help="Start the sandboxes (else set the URLs).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the processes as JSON.")] = False,
) -> None:
    """Migrate the database, then run the fleet until interrupted (Ctrl-C or SIGTERM)."""
    settings = get_settings()
    if not os.environ.get("FLOWER_BASIC_AUTH"):
        fail(
            "FLOWER_BASIC_AUTH is not set",
            "export FLOWER_BASIC_AUTH=user:password (Flower's API needs it)",
        )
    if not settings.database_url or not settings.broker_url:
        fail(
            "the fleet runs on PostgreSQL and Redis", "set HUZHU_DATABASE_URL and HUZHU_BROKER_URL"
        )
    _check_api_key(settings)
    proof_keys()  # the cycle workers and the api need them; refused here, before anything runs
    upgrade()
    env = dict(os.environ) | {"REMAP_SIGTERM": "SIGQUIT"}
    if sandboxes:
        env["HUZHU_HOSPITAL_URL"] = f"http://127.0.0.1:{hospital_port}"
        env["HUZHU_PAYMENTS_URL"] = f"http://127.0.0.1:{payments_port}"
    logs = settings.data_dir / "fleet"
    logs.mkdir(parents=True, exist_ok=True)
    commands = _commands(flower_port, api_port, hospital_port, payments_port, sandboxes)
    running = {
        name: _start(command, env, logs / f"{name}.log") for name, command in commands.items()
    }
    listing = [
        {"process": n, "pid": p.pid, "log": str(logs / f"{n}.log")} for n, p in running.items()
    ]
    urls = {"flower": f"http://127.0.0.1:{flower_port}", "api": f"http://127.0.0.1:{api_port}"}
    if as_json:
        print_json({"processes": listing, **urls})
    else:
        console.print(
            table("fleet", ["process", "pid", "log"], [list(r.values()) for r in listing])
        )
        console.print(f"Flower: {urls['flower']}  API: {urls['api']}  (Ctrl-C stops the fleet)")
    sys.stdout.flush()
    _wait_then_stop(running)


def _check_api_key(settings: Settings) -> None:
    """The API on the fleet trusts only the platform's key: a missing or unreadable one would
    stop the fleet a moment after it started, so it is refused before anything starts."""
    from api.auth import public_key  # as in `huzhu serve`: only the commands that need it

    hint = "export HUZHU_API_PUBLIC_KEY_FILE=<the platform's public key, PEM, Ed25519 or RSA>"
    if not settings.api_public_key_file:
        fail("HUZHU_API_PUBLIC_KEY_FILE is not set (the members' API checks tokens with it)", hint)
    try:
        public_key(settings)
    except (OSError, ValueError) as error:
        fail(f"cannot read the key in {settings.api_public_key_file}: {error}", hint)


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("a") as output:
        return subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `huzhu fleet up` itself dies, so nothing is orphaned."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_then_stop(running: dict[str, subprocess.Popen]) -> None:
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        dead = [name for name, process in running.items() if process.poll() is not None]
        if dead:
            console.print(f"[red]{', '.join(dead)} stopped; stopping the fleet[/]")
            break
        time.sleep(0.5)
    workers = [p for name, p in running.items() if name.startswith("worker-")]
    _stop(workers)
    _stop([p for p in running.values() if p not in workers])


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
