"""The members' API (FastAPI): routers for the public plan pages, members' own records, claims,
disputes and staff; every error is RFC 9457 problem+json."""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from api import (
    accesslog,
    claims,
    disputes,
    investigations,
    members,
    pages,
    proofs,
    public,
    staff,
    throttle,
    winddown,
)
from api.auth import public_key
from api.bodylimit import BodyLimit
from api.metrics import metrics_endpoint
from api.problems import RESPONSES, ProblemDetails, install
from broker.proofkeys import proof_secret
from broker.settings import get_settings


def create_app() -> FastAPI:
    """The API; refuses to start without a key to check members' tokens with or the proofs'
    secret."""
    public_key(get_settings())  # NotConfigured on a fleet without the platform's key
    proof_secret(get_settings())  # members' proofs are recomputed with it
    throttle.limiter(get_settings())
    app = FastAPI(title="Huzhu members' API", version="1", responses=RESPONSES)
    app.state.pages = {}  # the 公示 pages built lately, by plan (see public.PAGE_FRESH_SECONDS)
    install(app)
    app.add_middleware(BodyLimit)  # inside the access log, which records its refusals too
    accesslog.install(app)
    if origins := get_settings().api_cors_origins:  # off unless set: the app is not a browser page
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
            expose_headers=["ETag", "Location", "Retry-After"],
        )
    for module in (public, members, claims, disputes, staff, investigations, proofs, winddown):
        app.include_router(module.router)
    pages.install(app)  # the member's pages on the same handlers, under /app
    # For Prometheus; the proxy in front keeps it internal.
    app.router.routes.append(Route("/metrics", metrics_endpoint(), include_in_schema=False))
    _declare_problems(app)
    return app


def _declare_problems(app: FastAPI) -> None:
    """The problem+json schema in the OpenAPI document (cached by FastAPI), which RESPONSES
    refer to."""
    schemas = app.openapi()["components"]["schemas"]
    problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["ProblemDetails"] = problem
