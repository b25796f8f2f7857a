"""The compose fleet: docker-compose.yml as Docker Compose itself reads it, against the
compose-spec JSON schema, and the properties the fleet relies on (one worker per queue, one beat,
health checks, Flower behind auth, a durable Redis that never evicts, the members' API on the
platform's key). There is no Docker engine on this project's machines, so nothing is built or
started: these tests read the files.

Needs Debian's `docker-compose` (v1.29, which also ships the compose-spec schema) and the
`jsonschema` and `pyyaml` packages. A missing docker-compose fails the tests, never skips them.
"""

import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest

try:
    import jsonschema
    import yaml
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        f"{error.name} is missing: install the test extras (jsonschema, pyyaml)"
    ) from error

from broker.app import QUEUES, ROUTES
from broker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
# Debian's docker-compose package ships the compose-spec schema it validates with.
SCHEMA_FILE = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
INSTALL_HINT = "apt-get install -y docker-compose"

# The variables the file requires, set to values that appear nowhere in it.
REQUIRED = {
    "REDIS_PASSWORD": "test-redis-secret",
    "POSTGRES_PASSWORD": "test-postgres-secret",
    "FLOWER_BASIC_AUTH": "tester:test-flower-secret",
    # The host's file; inside the api container the setting names where it is mounted.
    "HUZHU_API_PUBLIC_KEY_FILE": "/test-keys/platform-public.pem",
    "HUZHU_PROOF_SECRET": "test-proof-secret",
    "HUZHU_LOG_KEY_FILE": "/test-keys/log-signing-key.pem",
    "HUZHU_REVIEW_SAMPLE_SEED": "test-review-sample-seed",
}
APP_ENV = {
    "HUZHU_DATABASE_URL": "postgresql+psycopg://huzhu:test-postgres-secret@postgres:5432/huzhu",
    "HUZHU_BROKER_URL": "redis://:test-redis-secret@redis:6379/0",
    "HUZHU_HOSPITAL_URL": "http://sandbox-hospital:8081",
    "HUZHU_PAYMENTS_URL": "http://sandbox-payments:8082",
}
SECRET_COLUMNS = {"args", "kwargs", "result"}
DRAFTS = {
    "draft-04": jsonschema.Draft4Validator,
    "draft-06": jsonschema.Draft6Validator,
    "draft-07": jsonschema.Draft7Validator,
    "2019-09": jsonschema.Draft201909Validator,
    "2020-12": jsonschema.Draft202012Validator,
}


# --- running docker-compose -------------------------------------------------------------------


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            f"docker-compose is not installed; these tests need it: {INSTALL_HINT}",
            pytrace=False,
        )
    return path


def compose(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run docker-compose on the file with exactly `env` for the variables the file reads: no
    .env file and none of this shell's own values for them."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in REQUIRED and not key.startswith(("HUZHU_", "COMPOSE_", "DOCKER_"))
    }
    environment |= REQUIRED if env is None else env
    command = [docker_compose(), "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE)]
    return subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """The file as Compose resolves it: anchors merged, variables filled in."""
    result = compose(tmp_path_factory.mktemp("compose"), "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@cache
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- reading services --------------------------------------------------------------------------


def option(command: list[str], *names: str) -> str | None:
    """The value of a command-line option, given as `--name value` or `--name=value`."""
    for index, word in enumerate(command):
        for name in names:
            if word == name and index + 1 < len(command):
                return command[index + 1]
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
    return None


def celery_command(service: dict) -> str | None:
    """`worker`, `beat`, `flower`, ... for a `celery -A workers <command>` service."""
    command = service.get("command") or []
    if command[:3] != ["celery", "-A", "workers"] or len(command) < 4:
        return None
    return command[3]


def services_running(config: dict, what: str) -> dict[str, dict]:
    return {
        name: service
        for name, service in config["services"].items()
        if celery_command(service) == what
    }


def seconds(duration: str) -> float:
    """A Go duration as Compose writes them: 1h30m, 60s, 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(amount) * units[unit] for amount, unit in parts)


def mounts(service: dict) -> dict[str, str]:
    """Mount target -> source (a named volume or a host path), short or long syntax."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
        else:
            source, target = volume.get("source", ""), volume["target"]
        result[target] = source
    return result


def container_ports(service: dict) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, str):
            ports.add(int(port.split("/")[0].rsplit(":", 1)[-1]))
        else:
            ports.add(int(port["target"]))
    return ports


def host_ip(port: str | dict) -> str:
    """The host address a port is published on (empty: every address)."""
    if isinstance(port, dict):
        return port.get("host_ip", "")
    parts = port.split(":")
    return parts[0] if len(parts) == 3 else ""


def health_test(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


# --- (a) Compose accepts the file, and refuses it without the passwords ------------------------


def test_docker_compose_accepts_the_file_with_the_required_variables_set(tmp_path):
    result = compose(tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr
    # Compose warns, rather than fails, about a variable the file uses without a default.
    assert "WARNING" not in result.stderr, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_docker_compose_refuses_the_file_without_each_required_variable(tmp_path, missing):
    env = {key: value for key, value in REQUIRED.items() if key != missing}
    result = compose(tmp_path, "config", "-q", env=env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_env_example_names_every_required_variable_with_a_placeholder():
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(REQUIRED) <= set(example)
    for key in REQUIRED:
        assert "change-me" in example[key], f"{key} in .env.example must be a placeholder"


# --- (b) the compose-spec JSON schema -----------------------------------------------------------


def compose_spec_validator() -> jsonschema.protocols.Validator:
    if not SCHEMA_FILE.exists():
        pytest.fail(
            f"{SCHEMA_FILE} is missing; it comes with Debian's docker-compose: {INSTALL_HINT}",
            pytrace=False,
        )
    schema = yaml.safe_load(SCHEMA_FILE.read_text())  # JSON is YAML
    # The draft it declares ("http://json-schema.org/draft/2019-09/schema#"), read by name: the
    # http address is not the metaschema's own id, so validator_for() would guess.
    declared = schema.get("$schema", "")
    validator_class = next((cls for key, cls in DRAFTS.items() if key in declared), None)
    assert validator_class, f"{SCHEMA_FILE} declares an unknown $schema: {declared!r}"
    validator_class.check_schema(schema)
    # The only format jsonschema does not know and Compose cares about: Go durations.
    formats = jsonschema.FormatChecker(formats=())
    formats.checks("duration")(lambda value: not isinstance(value, str) or bool(seconds(value)))
    return validator_class(schema, format_checker=formats)


def schema_errors(document: dict) -> list[str]:
    validator = compose_spec_validator()
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_file_as_written_validates_against_the_compose_spec_schema():
    assert schema_errors(raw()) == []


def test_the_file_as_compose_resolves_it_validates_against_the_compose_spec_schema(config):
    assert schema_errors(config) == []


# --- (c) what the fleet relies on ---------------------------------------------------------------


def test_one_worker_per_queue_each_consuming_only_its_own_queue(config):
    workers = services_running(config, "worker")
    queues = {
        name: option(service["command"], "-Q", "--queues") for name, service in workers.items()
    }
    assert sorted(queues.values()) == sorted(QUEUES)
    assert set(QUEUES) == {"intake", "review", "announce", "cycle", "payments"}
    # Every queue a task is routed to is consumed.
    assert {route["queue"] for route in ROUTES.values()} <= set(queues.values())
    for name, service in workers.items():
        queue = queues[name]
        command = service["command"]
        assert "," not in queue, f"{name} consumes several queues: {queue}"
        assert option(command, "-X", "--exclude-queues") is None
        assert option(command, "-n", "--hostname") == f"{queue}@%h"
        # Flower sees only what sends events.
        assert "-E" in command or "--events" in command or "--task-events" in command
        # The health check pings this worker, not any worker.
        assert f"-d {queue}@$$HOSTNAME" in health_test(service), health_test(service)


def test_workers_use_prefork_with_explicit_concurrency_and_prefetch_1_where_it_matters(config):
    workers = services_running(config, "worker")
    by_queue = {option(s["command"], "-Q", "--queues"): s["command"] for s in workers.values()}
    for queue, command in by_queue.items():
        # prefork: the pool that enforces hard time limits and redelivers a killed child's task.
        assert option(command, "-P", "--pool") in (None, "prefork"), queue
        assert int(option(command, "-c", "--concurrency")) >= 1, queue
        assert option(command, "--prefetch-multiplier") is not None, queue
        # An embedded beat in a worker would be a second beat.
        assert "-B" not in command and "--beat" not in command, queue
    for queue in ("review", "cycle", "payments"):
        assert option(by_queue[queue], "--prefetch-multiplier") == "1", queue
    assert option(by_queue["cycle"], "-c", "--concurrency") == "2"


def test_workers_stop_with_a_bounded_soft_shutdown_inside_the_grace_period(config):
    """SIGTERM becomes Celery's cold shutdown (REMAP_SIGTERM=SIGQUIT): it waits at most the
    soft-shutdown timeout, then hands unacknowledged messages back to Redis, all before Docker's
    SIGKILL at the end of stop_grace_period."""
    default = Settings.model_fields["worker_soft_shutdown_timeout"].default
    for name, service in services_running(config, "worker").items():
        environment = service["environment"]
        grace = seconds(service["stop_grace_period"])
        soft = float(environment.get("HUZHU_WORKER_SOFT_SHUTDOWN_TIMEOUT", default))
        assert grace >= 60, name
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM", name
        assert environment["REMAP_SIGTERM"] == "SIGQUIT", name
        assert 0 < soft < grace, (name, soft, grace)


def test_exactly_one_beat_with_the_redis_scheduler(config):
    beats = services_running(config, "beat")
    assert len(beats) == 1, sorted(beats)
    [(name, beat)] = beats.items()
    assert beat["deploy"]["replicas"] == 1
    assert option(beat["command"], "-S", "--scheduler") == "redbeat.RedBeatScheduler"
    # Beat answers `inspect ping` (Celery >= 5.7) under the name its health check uses.
    assert "--enable-remote-control" in beat["command"]
    node = option(beat["command"], "-n", "--hostname")
    assert node and node.endswith("@%h")
    assert f"-d {node.removesuffix('%h')}$$HOSTNAME" in health_test(beat)
    # Nothing else runs a scheduler.
    for other, service in config["services"].items():
        if other != name:
            assert "beat" not in (service.get("command") or [])[:4], other


def test_every_service_but_the_one_shot_migration_has_a_health_check(config):
    for name, service in config["services"].items():
        if name == "migrate":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name


def test_migration_runs_once_before_the_workers_and_beat(config):
    services = config["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["huzhu", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["redis"]["condition"] == "service_healthy"
    dependants = services_running(config, "worker") | services_running(config, "beat")
    for name, service in dependants.items():
        needs = service["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["redis"]["condition"] == "service_healthy", name
    for name, service in services_running(config, "worker").items():
        needs = service["depends_on"]
        assert needs["sandbox-hospital"]["condition"] == "service_healthy", name
        assert needs["sandbox-payments"]["condition"] == "service_healthy", name


def test_sandboxes_serve_on_the_ports_the_app_is_given_and_check_health(config):
    for service, port in (("hospital", 8081), ("payments", 8082)):
        sandbox = config["services"][f"sandbox-{service}"]
        command = sandbox["command"]
        assert command[:4] == ["python", "-m", "sandbox", service]
        assert option(command, "--host") == "0.0.0.0"
        assert option(command, "--port") == str(port)
        assert f"http://127.0.0.1:{port}/health" in health_test(sandbox)
        assert APP_ENV[f"HUZHU_{service.upper()}_URL"] == f"http://sandbox-{service}:{port}"


def test_every_app_service_gets_the_database_broker_and_outside_urls(config):
    app_services = {
        name: service
        for name, service in config["services"].items()
        if celery_command(service) or name in ("migrate", "api")
    }
    assert {"migrate", "beat", "flower", "api"} <= set(app_services)
    for name, service in app_services.items():
        assert service["image"] == config["services"]["migrate"]["image"], name
        for key, value in APP_ENV.items():
            assert service["environment"].get(key) == value, (name, key)
    assert raw()["x-huzhu-env"].keys() == APP_ENV.keys()
    # Every HUZHU_ variable given to any service is one the app reads (broker/settings.py).
    for name, service in config["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("HUZHU_"):
                assert key.removeprefix("HUZHU_").lower() in Settings.model_fields, (name, key)


def test_flower_requires_basic_auth_and_hides_task_arguments(config):
    [flower] = services_running(config, "flower").values()
    command = flower["command"]
    columns = option(command, "--tasks_columns", "--tasks-columns")
    assert columns, "without --tasks_columns Flower shows args, kwargs and result"
    assert not SECRET_COLUMNS & set(columns.split(","))
    # Credentials from the environment (required), never on the command line.
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == REQUIRED["FLOWER_BASIC_AUTH"]
    assert raw()["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith(
        "${FLOWER_BASIC_AUTH:?"
    )
    assert option(command, "--basic_auth", "--basic-auth") is None
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert option(command, "--port") == "5555"
    assert 5555 in container_ports(flower)
    assert "/healthcheck" in health_test(flower)
    # Its state lives in a named volume.
    assert option(command, "--persistent") == "True"
    db = option(command, "--db")
    assert db, "--db"
    assert mounts(flower).get(str(Path(db).parent)) in config["volumes"]


def test_the_api_runs_uvicorn_workers_after_the_migration_and_checks_healthz(config):
    api = config["services"]["api"]
    command = api["command"]
    assert command[:3] == ["uvicorn", "api.app:create_app", "--factory"]
    assert int(option(command, "--workers")) > 1
    assert option(command, "--host") == "0.0.0.0"
    port = int(option(command, "--port"))
    assert f"http://127.0.0.1:{port}/healthz" in health_test(api)
    # Published on the host's loopback only: a proxy in front faces members.
    assert api["ports"] and all(host_ip(p) == "127.0.0.1" for p in api["ports"])
    assert port in container_ports(api)
    needs = api["depends_on"]
    assert needs["migrate"]["condition"] == "service_completed_successfully"
    assert needs["postgres"]["condition"] == "service_healthy"
    assert needs["redis"]["condition"] == "service_healthy"


def test_the_api_reads_the_platforms_key_from_a_read_only_mount_of_the_required_file(config):
    api = config["services"]["api"]
    inside = api["environment"]["HUZHU_API_PUBLIC_KEY_FILE"]
    [mount] = [v for v in api["volumes"] if v["target"] == inside]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert mount["source"] == REQUIRED["HUZHU_API_PUBLIC_KEY_FILE"]
    volume = next(v for v in raw()["services"]["api"]["volumes"] if v["target"] == inside)
    assert volume["source"].startswith("${HUZHU_API_PUBLIC_KEY_FILE:?")
    # No other service is given the key, nor told where one is.
    for name, service in config["services"].items():
        if name != "api":
            assert "HUZHU_API_PUBLIC_KEY_FILE" not in service.get("environment", {}), name


def test_redis_keeps_an_append_only_file_never_evicts_and_needs_a_password(config):
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--appendfsync") == "everysec"
    assert option(command, "--maxmemory-policy") == "noeviction"
    assert option(command, "--requirepass") == REQUIRED["REDIS_PASSWORD"]
    assert raw()["services"]["redis"]["command"][-1].startswith("${REDIS_PASSWORD:?")
    assert mounts(redis).get("/data") in config["volumes"]
    # redis-cli exits 0 on a NOAUTH error, so the check must authenticate and look for PONG.
    assert "-a" in health_test(redis) and "PONG" in health_test(redis)


def test_postgres_keeps_its_data_in_a_volume_and_takes_its_password_from_the_environment(config):
    postgres = config["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert postgres["environment"]["POSTGRES_PASSWORD"] == REQUIRED["POSTGRES_PASSWORD"]
    assert mounts(postgres).get("/var/lib/postgresql/data") in config["volumes"]
    assert "pg_isready" in health_test(postgres)


def test_no_password_is_written_in_the_file():
    text = COMPOSE_FILE.read_text()
    # Every password in a URL, and every *PASSWORD* or *AUTH* variable, is a ${...} reference.
    for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", text):
        assert password.startswith("${"), password
    for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|AUTH)\w*):\s*(\S.*)$", text, re.M):
        assert value.startswith("${"), (key, value)
    for value in REQUIRED.values():
        assert value not in text


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_as_a_non_root_user_without_secrets():
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms), froms
    # The dependencies as locked, each file checked against its hash; then the project alone.
    assert "RUN pip install --require-hashes --no-deps -r requirements.txt" in lines
    assert "RUN pip install --no-deps ." in lines
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for line in lines:
        if line.upper().startswith(("ENV ", "ARG ")):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|BASIC_AUTH", line, re.I), line
    # What the compose commands run beyond the project itself is in the image.
    installs = " ".join(line for line in lines if "pip install" in line)
    dependencies = " ".join(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    )
    locked = (ROOT / "requirements.txt").read_text()
    for package in ("flower", "celery-redbeat"):
        assert package in installs or package in dependencies, package
        assert f"\n{package}==" in locked, package


def test_the_build_copies_every_package_pip_installs():
    """The build stage copies the packages one by one, so a package left out of the COPY lines
    is missing from the image (as api/ was) while `pip install .` still succeeds."""
    lines = DOCKERFILE.read_text().splitlines()
    copied = {
        line.split()[1].rstrip("/")
        for line in lines
        if line.startswith("COPY ") and "--from" not in line
    }
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    tops = {pattern.rstrip("*") for pattern in include}
    assert tops <= copied, f"COPY them in the Dockerfile: {sorted(tops - copied)}"


def test_the_image_installs_every_package_of_the_project():
    """`pip install .` (not editable) takes only the packages setuptools finds under
    pyproject.toml's include patterns: every package the app imports must be among them."""
    from setuptools import find_packages

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    found = set(find_packages(where=str(ROOT), include=patterns))
    app = {"domain", "broker", "workers", "cli", "api", "sandbox"}
    present = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in app
        for init in (ROOT / top).rglob("__init__.py")
        if ".venv" not in init.parts
    }
    missing = sorted(present - found)
    assert present >= app and not missing, f"include them in pyproject.toml: {missing}"


def test_only_the_cycle_worker_signs_the_log_and_only_it_and_the_api_know_the_proof_secret(config):
    services = config["services"]
    for name, service in services.items():
        environment = service.get("environment", {})
        knows = environment.get("HUZHU_PROOF_SECRET")
        assert knows == (
            REQUIRED["HUZHU_PROOF_SECRET"] if name in {"worker-cycle", "api"} else None
        ), name
        assert ("HUZHU_LOG_KEY_FILE" in environment) == (name == "worker-cycle"), name
    cycle = services["worker-cycle"]
    inside = cycle["environment"]["HUZHU_LOG_KEY_FILE"]
    [mount] = [v for v in cycle["volumes"] if v["target"] == inside]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert mount["source"] == REQUIRED["HUZHU_LOG_KEY_FILE"]
    # Still a worker: the cold shutdown and its grace survive the environment of its own.
    assert cycle["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert cycle["environment"]["HUZHU_DATABASE_URL"] == APP_ENV["HUZHU_DATABASE_URL"]


def test_only_the_review_worker_has_the_sample_draws_key(config):
    given = {
        name
        for name, service in config["services"].items()
        if "HUZHU_REVIEW_SAMPLE_SEED" in service.get("environment", {})
    }
    assert given == {"worker-review"}
    seed = config["services"]["worker-review"]["environment"]["HUZHU_REVIEW_SAMPLE_SEED"]
    assert seed == REQUIRED["HUZHU_REVIEW_SAMPLE_SEED"]
