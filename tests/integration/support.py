"""Helpers of the integration tests: the two stacks, worker subprocesses, the CLI, waiting."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.settings import Settings

ALL_QUEUES = "intake,review,announce,cycle,payments"


@dataclass
class Stack:
    """One way to run Huzhu: its settings and the environment a subprocess needs for them."""

    name: str
    settings: Settings

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HUZHU_DATA_DIR"] = str(self.settings.data_dir)
        env["HUZHU_DATABASE_URL"] = self.settings.database_url
        env["HUZHU_BROKER_URL"] = self.settings.broker_url
        env["HUZHU_BROKER_KEY_PREFIX"] = self.settings.broker_key_prefix
        env["HUZHU_CHUNK_SIZE"] = str(self.settings.chunk_size)
        env["HUZHU_PAYMENTS_URL"] = self.settings.payments_url
        env["HUZHU_HOSPITAL_URL"] = self.settings.hospital_url
        if self.settings.log_key_file:  # the fleet's; the embedded default makes its own
            env["HUZHU_PROOF_SECRET"] = self.settings.proof_secret.get_secret_value()
            env["HUZHU_LOG_KEY_FILE"] = str(self.settings.log_key_file)
        return env


def run_worker(stack: Stack, concurrency: int = 2) -> Iterator[subprocess.Popen]:
    log = stack.settings.data_dir / "worker.log"
    with log.open("w") as output:
        process = start_worker(
            stack.env, output, solo=stack.name == "sqlite", concurrency=concurrency
        )
    try:
        yield process
    finally:
        stop_worker(process, grace=20)


def stop_worker(process: subprocess.Popen, grace: float = 60) -> None:
    """A warm shutdown (SIGTERM); killed, with its children when it leads a process group of
    its own, if it has not stopped within `grace` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def start_worker(
    env: dict, log, solo: bool = False, concurrency: int = 2, own_group: bool = False
) -> subprocess.Popen:
    """`celery -A workers worker` on every queue. SQLite takes one writer: one solo process;
    PostgreSQL gets a small prefork pool. `own_group` puts it and its children in a process
    group of their own, so that a test can kill them all at once, as a host crash would."""
    pool = ["--pool", "solo"] if solo else ["--pool", "prefork", "-c", str(concurrency)]
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-Q",
        ALL_QUEUES,
        "-l",
        "info",
        *pool,
    ]
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_group
    )


def huzhu(
    stack: Stack, *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run the `huzhu` command as an operator would, against the stack."""
    result = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        worker_log = stack.settings.data_dir / "worker.log"
        tail = worker_log.read_text()[-3000:] if worker_log.exists() else ""
        raise AssertionError(
            f"huzhu {' '.join(args)} exited {result.returncode}:\n{result.stderr}\n{tail}"
        )
    return result


def wait_until(check, timeout: float = 60, what: str = "condition", log: Path | None = None):
    """Poll `check` until it returns something true; on time-out, show the worker's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"{what} did not happen within {timeout} s\n{tail}")


def log_key_pem(path: Path) -> Path:
    """A new Ed25519 private key for the log's heads, written as PEM (the fleet's is given)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    return path
