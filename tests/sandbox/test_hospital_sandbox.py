"""The sandbox FHIR hospital: Condition search, confirmation mode, errors and fault switches."""

import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from sandbox.faults import Faults
from sandbox.hospital import ICD10, load_records, make_hospital_app
from tests.sandbox.support import in_process, is_json, live, set_faults

ROOT = Path(__file__).resolve().parents[2]

RECORDS = {
    "patients": {
        "M0000123": [
            {"icd10": "C73", "onset": "2026-10-02", "clinical_status": "active"},
            {"icd10": "E04.1", "onset": "2023-05-01", "clinical_status": "resolved"},
        ],
        "M0000200": [
            {"icd10": "C34.1", "onset": "2025-03-01"},
            {"icd10": "C34.10", "onset": "2025-03-02"},
            {"icd10": "C73.0", "onset": "2024-12-31", "clinical_status": "active"},
            {"icd10": "C50.9", "onset": "2025-01-05", "clinical_status": "remission"},
        ],
    },
    "unknown_patients": ["M9999999"],
}


def icd(code: str) -> str:
    return f"{ICD10}|{code}"


def codes(bundle: dict) -> list[str]:
    return [e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]]


def onsets(bundle: dict) -> list[str]:
    return [e["resource"]["onsetDateTime"] for e in bundle["entry"]]


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    return path


async def test_bundle_has_the_fhir_searchset_shape(records_file: Path) -> None:
    async with live(make_hospital_app(load_records(records_file))) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        response = await client.get("/Condition", params={"patient": "M0000123"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == len(bundle["entry"]) == 2
    entry = bundle["entry"][0]
    condition = entry["resource"]
    assert entry["fullUrl"] == f"{client.base_url}/Condition/{condition['id']}"
    assert condition["resourceType"] == "Condition"
    assert condition["subject"] == {"reference": "Patient/M0000123"}
    assert condition["clinicalStatus"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "code": "active",
    }
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert condition["code"]["coding"] == [{"system": ICD10, "code": "C73"}]
    assert condition["onsetDateTime"] == condition["recordedDate"] == "2026-10-02"
    statuses = [e["resource"]["clinicalStatus"]["coding"][0]["code"] for e in bundle["entry"]]
    assert statuses == ["active", "resolved"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("C73", ["C73.0"]),  # a more specific code under the one searched
        ("C34.1", ["C34.1"]),  # not C34.10: only "C34.1" itself or "C34.1.<...>"
        ("C34", ["C34.1", "C34.10"]),
        ("c50.9", ["C50.9"]),
        ("C7", []),  # a prefix without the dot is not a parent code
    ],
)
async def test_code_matches_itself_or_codes_under_it(code: str, expected: list[str]) -> None:
    async with in_process(make_hospital_app(RECORDS)) as client:
        response = await client.get("/Condition", params={"patient": "M0000200", "code": icd(code)})
    assert response.status_code == 200
    assert codes(response.json()) == expected


async def test_code_in_another_system_matches_nothing_and_bare_code_matches() -> None:
    async with in_process(make_hospital_app(RECORDS)) as client:
        other = await client.get(
            "/Condition", params={"patient": "M0000200", "code": "http://snomed.info/sct|C73"}
        )
        bare = await client.get("/Condition", params={"patient": "Patient/M0000200", "code": "C73"})
    assert other.json()["total"] == 0
    assert codes(bare.json()) == ["C73.0"]


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (["eq2025-01-05"], ["2025-01-05"]),
        (["2025-01-05"], ["2025-01-05"]),  # no prefix means eq
        (["lt2025-01-05"], ["2024-12-31"]),
        (["le2025-01-05"], ["2024-12-31", "2025-01-05"]),
        (["gt2025-01-05"], ["2025-03-01", "2025-03-02"]),
        (["ge2025-03-01"], ["2025-03-01", "2025-03-02"]),
        (["ge2025-01-01", "lt2025-03-02"], ["2025-01-05", "2025-03-01"]),  # repeats are ANDed
    ],
)
async def test_onset_date_filters(dates: list[str], expected: list[str]) -> None:
    async with live(make_hospital_app(RECORDS)) as client:
        response = await client.get(
            "/Condition", params=[("patient", "M0000200")] + [("onset-date", d) for d in dates]
        )
    assert sorted(onsets(response.json())) == expected


async def test_records_mode_shows_an_earlier_condition() -> None:
    async with live(make_hospital_app(RECORDS)) as client:
        diagnosis = await client.get(
            "/Condition",
            params={"patient": "M0000123", "code": icd("C73"), "onset-date": "eq2026-10-02"},
        )
        earlier = await client.get(
            "/Condition", params={"patient": "M0000123", "onset-date": "lt2025-01-05"}
        )
    assert codes(diagnosis.json()) == ["C73"]
    assert codes(earlier.json()) == ["E04.1"]
    assert onsets(earlier.json()) == ["2023-05-01"]


async def test_confirmation_mode_confirms_the_diagnosis_as_submitted() -> None:
    async with live(make_hospital_app()) as client:
        diagnosis = await client.get(
            "/Condition",
            params={"patient": "M0000001", "code": icd("C50.9"), "onset-date": "eq2026-10-02"},
        )
        earlier = await client.get(
            "/Condition", params={"patient": "M0000001", "onset-date": "lt2026-06-01"}
        )
        undated = await client.get("/Condition", params={"patient": "M0000001", "code": icd("I21")})
        contradictory = await client.get(
            "/Condition",
            params=[
                ("patient", "M0000001"),
                ("code", icd("C73")),
                ("onset-date", "eq2026-10-02"),
                ("onset-date", "lt2026-10-02"),
            ],
        )
    bundle = diagnosis.json()
    assert bundle["total"] == 1
    condition = bundle["entry"][0]["resource"]
    assert condition["code"]["coding"][0]["code"] == "C50.9"
    assert condition["onsetDateTime"] == "2026-10-02"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
    assert earlier.json() == {**earlier.json(), "total": 0, "entry": []}
    assert onsets(undated.json()) == [date.today().isoformat()]
    assert contradictory.json()["total"] == 0


@pytest.mark.parametrize(
    ("records", "patient"),
    [(RECORDS, "M9999999"), (RECORDS, "M0000404"), (None, "UNKNOWN-7")],
)
async def test_unknown_patient_is_a_404_operation_outcome(
    records: dict | None, patient: str
) -> None:
    async with live(make_hospital_app(records)) as client:
        response = await client.get("/Condition", params={"patient": patient, "code": icd("C73")})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["code"] == "not-found"
    assert patient in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"patient": ""},
        {"patient": "M1", "onset-date": "sa2026-01-01"},
        {"patient": "M1", "onset-date": "eq2026-13-01"},
    ],
)
async def test_bad_search_is_a_400_operation_outcome(params: dict) -> None:
    async with in_process(make_hospital_app()) as client:
        response = await client.get("/Condition", params=params)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_bad_records_file_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"patients": {"M1": [{"icd10": "C73", "onset": "soon"}]}}))
    with pytest.raises(ValueError, match="M1"):
        load_records(path)


SEARCH = {"patient": "M0000001", "code": icd("C73"), "onset-date": "eq2026-10-02"}


async def test_latency_is_added_to_business_requests_only() -> None:
    async with live(make_hospital_app(faults=Faults(latency_ms=300))) as client:
        started = time.perf_counter()
        assert (await client.get("/Condition", params=SEARCH)).status_code == 200
        slow = time.perf_counter() - started
        started = time.perf_counter()
        assert (await client.get("/health")).status_code == 200
        fast = time.perf_counter() - started
    assert slow >= 0.3
    assert fast < 0.2


async def test_fail_next_answers_503_then_recovers() -> None:
    async with live(make_hospital_app()) as client:
        await set_faults(client, fail_next=2)
        first = await client.get("/Condition", params=SEARCH)
        # /_sandbox and /health are never faulted and do not use up the count.
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/_sandbox/faults")).json()["fail_next"] == 1
        second = await client.get("/Condition", params=SEARCH)
        third = await client.get("/Condition", params=SEARCH)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.json()["resourceType"] == "OperationOutcome"
    assert third.json()["total"] == 1


async def test_timeout_next_lets_the_client_timeout_fire() -> None:
    started = time.perf_counter()
    async with live(make_hospital_app(faults=Faults(timeout_next=1))) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/Condition", params=SEARCH, timeout=0.5)
        assert (await client.get("/Condition", params=SEARCH)).status_code == 200
    # The hung request ended when the client hung up, not after hang_seconds (30).
    assert time.perf_counter() - started < 5


async def test_malformed_next_answers_unparsable_json() -> None:
    async with live(make_hospital_app(faults=Faults(malformed_next=1))) as client:
        garbled = await client.get("/Condition", params=SEARCH)
        fine = await client.get("/Condition", params=SEARCH)
    assert garbled.status_code == 200
    assert garbled.headers["content-type"] == "application/json"
    assert garbled.text == "{not json"
    assert not is_json(garbled.text)
    assert fine.json()["total"] == 1


async def test_5xx_rate_is_reproducible_with_a_seed() -> None:
    rng = random.Random(7)
    expected = [503 if rng.random() < 0.5 else 200 for _ in range(20)]
    async with live(make_hospital_app()) as client:
        await set_faults(client, status_5xx_rate=0.5, seed=7)
        statuses = [(await client.get("/Condition", params=SEARCH)).status_code for _ in range(20)]
        await set_faults(client, seed=7)  # re-seeding replays the same pattern
        again = [(await client.get("/Condition", params=SEARCH)).status_code for _ in range(20)]
    assert statuses == again == expected
    assert 0 < statuses.count(503) < 20


async def test_fault_switches_are_checked_read_and_reset() -> None:
    async with in_process(make_hospital_app(faults=Faults(latency_ms=5))) as client:
        bad = await client.post("/_sandbox/faults", json={"fail_next": -1, "latency_ms": 9})
        unknown = await client.post("/_sandbox/faults", json={"explode": True})
        current = await client.get("/_sandbox/faults")
        await set_faults(client, fail_next=3, duplicate_replies=True, hang_seconds=1.5)
        reset = await client.post("/_sandbox/reset")
        after = await client.get("/_sandbox/faults")
    assert bad.status_code == unknown.status_code == 422
    assert current.json()["latency_ms"] == 5  # the bad body changed nothing
    assert reset.status_code == 200
    assert after.json() == Faults().as_dict()


async def test_the_command_line_serves_the_hospital(records_file: Path) -> None:
    command = [sys.executable, "-m", "sandbox", "hospital", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--records", str(records_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=10)
        url = line.strip().rsplit(" ", 1)[-1]
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            response = await client.get("/Condition", params={"patient": "M0000123"})
        assert response.json()["total"] == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
