"""The Celery tasks; `celery -A workers worker` finds the app here."""

from broker.app import app
from workers import claims, cycles, housekeeping, payments

__all__ = ["app", "claims", "cycles", "housekeeping", "payments"]
