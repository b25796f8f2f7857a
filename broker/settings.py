"""Settings from the environment (HUZHU_*); the defaults are the embedded, server-less ones."""

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUZHU_", extra="ignore")

    # Where the embedded default keeps its SQLite database and its file-system queue.
    data_dir: Path = Path("huzhu-data")
    # e.g. postgresql+psycopg://postgres@127.0.0.1:5432/huzhu ; default: SQLite in data_dir
    database_url: str = ""
    # PostgreSQL connections each process keeps, and never more: an API process serves a
    # request per thread, and connections opened past the pool and closed on return cost
    # more than the request (POST /v1/claims: 265 req/s with 5 kept and 5 more opened as
    # needed, 428 with 16 kept, same run's reference 425-608). Fleet: api workers x this +
    # one or two per worker process stays under PostgreSQL's 100 connections.
    database_pool_size: int = 10
    # e.g. redis://127.0.0.1:6379/0 ; default: a file-system queue in data_dir (no server)
    broker_url: str = ""
    # Prepended to every Redis key of the broker and of beat, so that several environments
    # (or concurrent test runs) can share one Redis without taking each other's messages.
    broker_key_prefix: str = ""
    # Members per charging chunk: one INSERT ... SELECT each, spread over the cycle workers.
    # Default: 50,000 on PostgreSQL; 1,000,000 on SQLite, whose one writer gains nothing from
    # more chunks but pays a commit and a WAL checkpoint for each (benchmarks: 0.59 of a bare
    # insert at 50,000, 0.77 at 1,000,000 for a million members).
    chunk_size: int | None = None
    # Seconds before Redis hands an unacknowledged task to another worker; far above every
    # task's hard time limit so a running task is never started twice.
    visibility_timeout: int = 3600
    task_time_limit: int = 600
    # On a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT as in compose), running
    # tasks get this long before their messages go back to the queue; below the stop grace.
    worker_soft_shutdown_timeout: float = 30.0
    # How long a claim may sit in an intermediate state before the sweep sends its step again.
    stuck_after_seconds: int = 600
    # The hospital's FHIR R4 API and the payment provider; empty: the in-process sandboxes.
    hospital_url: str = ""
    payments_url: str = ""
    # Seconds for one HTTP request; attempts per call (transport errors and 5xx are retried).
    http_timeout: float = 5.0
    http_attempts: int = 3
    # Payer accounts per debit request (each request carries their members' charges).
    debit_batch_size: int = 1000
    # The members' API: the platform's public key (PEM, Ed25519 or RSA) that signs members'
    # tokens, and the audience they must name. Empty on the embedded default: a development key
    # made in data_dir, which nothing else trusts.
    api_public_key_file: Path | None = None
    api_audience: str = "huzhu"
    # Each member's writes (join, claim, object, vote...) in a moving window, one rate in the
    # `limits` library's notation, e.g. "60/minute".
    api_write_limit: str = "60/minute"
    # The proofs members check (domain.sumtree): the secret every member's salt is derived from
    # (at least 32 characters, the same on every cycle worker and API process, never changed:
    # old proofs are recomputed with it) and the Ed25519 private key (PEM) that signs the log's
    # tree heads. Empty on the embedded default: both made once in data_dir.
    proof_secret: SecretStr = SecretStr("")
    log_key_file: Path | None = None
    # The key of the review's sample draw (domain.review.sample_draw): the same key draws the
    # same claims again; secret on the fleet, so that no one picks a submission id to avoid it.
    review_sample_seed: SecretStr = SecretStr("embedded-default")
    # Investigators' evidence files, kept by their SHA-256 (broker.evidence): on the fleet a
    # volume every API process mounts. Empty: `evidence` in data_dir.
    evidence_dir: Path | None = None
    # The members' pages' own origin as browsers see it (e.g. https://huzhu.example), when a
    # proxy in front does not pass the Host on: forms are taken from this origin only. Empty:
    # the request's own host.
    app_origin: str = ""
    # Origins allowed to call the API from a browser (CORS); none by default.
    api_cors_origins: list[str] = []
    # Rehearsals only (the demo's data, the end-to-end tests): the API's clock runs this many
    # days ahead, so that a member can join, see the waiting period pass and object in one
    # sitting. Zero on the fleet; `huzhu serve` says so when it is not.
    api_clock_offset_days: float = 0.0

    @property
    def embedded(self) -> bool:
        """SQLite and the file queue: one machine, no servers (the demo, `huzhu serve`)."""
        return not self.database_url and self.uses_file_queue

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'huzhu.db'}"

    @property
    def chunk_members(self) -> int:
        if self.chunk_size:
            return self.chunk_size
        return 1_000_000 if self.database.startswith("sqlite") else 50_000

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def queue_folder(self) -> Path:
        return self.data_dir / "queue"

    @property
    def evidence_folder(self) -> Path:
        return self.evidence_dir or self.data_dir / "evidence"

    @property
    def uses_file_queue(self) -> bool:
        return self.broker.startswith("filesystem")

    def make_folders(self) -> None:
        """The data folder (beat's schedule, SQLite) and the file queue's folders must exist
        before anyone sends or consumes."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.uses_file_queue:
            for sub in ("messages", "processed", "control"):
                (self.queue_folder / sub).mkdir(parents=True, exist_ok=True)

    def transport_options(self) -> dict:
        options: dict = {"visibility_timeout": self.visibility_timeout}
        if self.broker_key_prefix:
            options["global_keyprefix"] = self.broker_key_prefix
        if self.uses_file_queue:
            folder = self.queue_folder.resolve()
            options |= {
                "data_folder_in": str(folder / "messages"),
                "data_folder_out": str(folder / "messages"),
                "processed_folder": str(folder / "processed"),
                "store_processed": False,
                "control_folder": str(folder / "control"),
                "polling_interval": 0.05,
            }
        return options


_current: Settings | None = None


def get_settings() -> Settings:
    global _current
    if _current is None:
        _current = Settings()
    return _current


def use_settings(settings: Settings) -> None:
    """Make `settings` this process's settings (the demo and tests run on their own)."""
    global _current
    _current = settings
