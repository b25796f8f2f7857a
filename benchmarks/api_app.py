"""The API benchmark's server: the members' API as `api.app.create_app` makes it, plus two
reference routes of the benchmark's own (never part of `api/`), so that both sides of each
ratio are served by the same uvicorn workers with the same middleware and settings.

    python -m uvicorn benchmarks.api_app:create --factory --workers 2
"""

import json
from typing import Annotated, Any

from fastapi import Body, FastAPI
from sqlalchemy import text

from api.app import create_app
from broker.app import app as celery
from broker.database import engine

STATIC_PATH = "/bench/static"
REFERENCE_PATH = "/bench/reference"
# The reference write's table: made by the benchmark before the server starts.
REFERENCE_TABLE = "bench_api_reference"
STATIC = {"plan": "critical-illness", "status": "announced", "cases": 0}


def create() -> FastAPI:
    """uvicorn's factory. Both reference routes are plain `def`, as the routes they stand
    beside are: each runs on the same thread pool, so the thread hop is on both sides."""
    served = create_app()

    @served.get(STATIC_PATH, include_in_schema=False)
    def static() -> dict[str, Any]:
        """A constant dict: the framework's own cost of a JSON GET."""
        return STATIC

    @served.post(REFERENCE_PATH, status_code=202, include_in_schema=False)
    def reference(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """The least a claim's POST must do: one row committed, then one message to Redis."""
        raw = json.dumps(body, ensure_ascii=False, sort_keys=True)
        with engine().begin() as connection:
            row = connection.execute(
                text(f"INSERT INTO {REFERENCE_TABLE} (raw) VALUES (:raw) RETURNING id"),
                {"raw": raw},
            ).scalar_one()
        celery.send_task("bench.noop", args=(row,), queue="intake")
        return {"id": row}

    return served
