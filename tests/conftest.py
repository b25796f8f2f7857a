"""Shared test settings: a Hypothesis profile that keeps the suite quick but searching."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "huzhu", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("huzhu")
