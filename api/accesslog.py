"""One access-log line per request: method, path, status, time and the caller's member_ref —
never a name, a birth date or a diagnosis (those travel only in bodies, which are not logged)."""

import logging
import sys
import time

from fastapi import FastAPI, Request

log = logging.getLogger("huzhu.api.access")


def install(app: FastAPI) -> None:
    if not logging.getLogger().handlers and not log.handlers:
        # Under uvicorn nothing configures our loggers (its own access log is turned off).
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            log.info(
                "%s %s %d %.1fms member=%s",
                request.method,
                request.url.path,
                status,
                (time.perf_counter() - started) * 1000,
                getattr(request.state, "member_ref", "-"),
            )
