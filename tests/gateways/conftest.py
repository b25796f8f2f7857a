"""Gateways against the sandbox services over a real loopback socket."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.settings import Settings, get_settings, use_settings
from sandbox.hospital import load_records, make_hospital_app
from sandbox.payments import make_payments_app
from sandbox.server import serving

RECORDS = {
    "patients": {
        "P-1": [
            {"icd10": "C73", "onset": "2026-10-02", "clinical_status": "active"},
            {"icd10": "C73.0", "onset": "2019-05-01", "clinical_status": "resolved"},
        ]
    },
    "unknown_patients": ["P-404"],
}


def records_file(folder: Path) -> Path:
    """The hospital's records, as an operator gives them to the sandbox."""
    (folder / "records.json").write_text(json.dumps(RECORDS))
    return folder / "records.json"


@pytest.fixture
def hospital_url(tmp_path: Path) -> Iterator[str]:
    with serving(make_hospital_app(load_records(records_file(tmp_path)))) as url:
        yield url


@pytest.fixture
def payments_url() -> Iterator[str]:
    with serving(make_payments_app(failing_accounts={"BROKE"})) as url:
        yield url


@pytest.fixture
def gateway_settings(hospital_url: str, payments_url: str) -> Iterator[Settings]:
    """Short time-outs so that a hung service costs a test well under a second."""
    before = get_settings()
    settings = Settings(
        hospital_url=hospital_url, payments_url=payments_url, http_timeout=0.3, http_attempts=3
    )
    use_settings(settings)
    yield settings
    use_settings(before)


async def faults(url: str, **switches) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        (await http.post("/_sandbox/faults", json=switches)).raise_for_status()


async def provider_state(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.get("/_sandbox/state")).json()
