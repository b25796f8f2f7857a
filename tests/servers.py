"""A PostgreSQL and a Redis of the test session's own: started on free loopback ports in a
temporary folder and stopped at the end, so a run never stops, restarts or writes to a server
already running on the machine. The fault tests restart these, and only these."""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

START_TIMEOUT = 60  # seconds: a bound on a hang, never what a test depends on


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: from HUZHU_PG_BIN, Debian's folder (newest first), or PATH."""
    folders = [os.environ.get("HUZHU_PG_BIN", "")]
    folders += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for folder in filter(None, folders):
        if (Path(folder) / name).exists():
            return str(Path(folder) / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found: install the PostgreSQL server (the README's system packages) "
            "or set HUZHU_PG_BIN to its bin folder"
        )
    return found


def _version(folder: str) -> int:
    number = Path(folder).parent.name
    return int(number) if number.isdigit() else 0


class PostgresServer:
    """`initdb` into a temporary folder, `pg_ctl start` on a free port. As root (CI), the
    server runs as the `postgres` system user, as PostgreSQL insists."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="huzhu-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres")
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}\n{tail}")

    def start(self) -> "PostgresServer":
        self._run(
            postgres_bin("initdb"),
            *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
            *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        )
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        # Durability settings off: the data is thrown away at the end; a crash test kills the
        # server's processes, not the machine, so fsync adds nothing but time.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c autovacuum=off"
        )
        self._run(
            postgres_bin("pg_ctl"),
            *("-D", str(self.data), "-l", str(self.folder / "server.log")),
            *("-o", options, "-m", "fast", "-w", "-t", str(START_TIMEOUT), action),
        )

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._pg_ctl("stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


class RedisServer:
    """`redis-server` on a free port, keeping nothing on disk (as the machine's does)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="huzhu-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install it (the README's system packages)")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.folder)),
                *("--logfile", str(self.folder / "server.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.folder}/server.log")
            time.sleep(0.05)
        return self

    def restart(self) -> None:
        """Shut down (losing every key, as the machine's Redis would) and start again."""
        self._shutdown()
        self.start()

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _shutdown(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(redis.RedisError):  # it closes the connection as it goes
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(nosave=True)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False
