"""The fault suite reuses the integration fixtures (real PostgreSQL, Redis, workers)."""

from tests.integration.conftest import postgres_stack, postgres_url, redis_url  # noqa: F401
