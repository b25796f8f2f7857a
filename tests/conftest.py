"""Shared test settings: the real-server fixtures and a Hypothesis profile that keeps the suite
quick but searching."""

from hypothesis import HealthCheck, settings

# The real servers and worker subprocesses, for the integration and fault suites.
pytest_plugins = ["tests.integration.fixtures", "tests.integration.api_support"]

settings.register_profile(
    "huzhu", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("huzhu")
