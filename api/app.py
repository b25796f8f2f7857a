"""The members' API (FastAPI): routers for the public plan pages, members' own records, claims,
disputes and staff; every error is RFC 9457 problem+json."""

from fastapi import FastAPI

from api import claims, disputes, members, public, staff
from api.auth import public_key
from api.problems import install
from broker.settings import get_settings


def create_app() -> FastAPI:
    """The API; refuses to start without a key to check members' tokens with."""
    public_key(get_settings())  # NotConfigured on a fleet without the platform's key
    app = FastAPI(title="Huzhu members' API", version="1")
    install(app)
    for module in (public, members, claims, disputes, staff):
        app.include_router(module.router)
    return app
