"""The hospital-records gateway: an async httpx client of a FHIR R4 `Condition` search."""

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import date
from functools import cache

import httpx

from broker.http import Unavailable, connected, with_retries
from broker.settings import get_settings
from domain.records import Condition, Evidence, Reply
from domain.services.claims import EvidenceRequest

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@cache
def _sandbox():
    from sandbox.hospital import make_hospital_app

    return make_hospital_app()


def hospital_client() -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return connected(get_settings().hospital_url, _sandbox)


class Unreadable(ValueError):
    pass


async def fetch_evidence(request: EvidenceRequest) -> Evidence:
    """The diagnosis as the hospital recorded it, and the patient's conditions before joining.

    Raises broker.http.Unavailable when the hospital cannot be reached (the task retries);
    an unknown patient or an unreadable reply is evidence too, and review decides on it.
    """
    async with hospital_client() as http:
        # Both searches end before anything is raised: on a kept loop, a search left running
        # would go on in the next task's call.
        diagnosis, earlier = await asyncio.gather(
            _search(
                http,
                patient=request.member_ref,
                code=f"{ICD10_SYSTEM}|{request.icd10}",
                onset=f"eq{request.diagnosed_on.isoformat()}",
            ),
            _search(http, patient=request.member_ref, onset=f"lt{request.joined_on.isoformat()}"),
            return_exceptions=True,
        )
    for reply in (diagnosis, earlier):
        if isinstance(reply, BaseException):
            raise reply
    for reply in (diagnosis, earlier):
        if isinstance(reply, Evidence):
            return reply
    return Evidence(Reply.FOUND, diagnosis=diagnosis, earlier=earlier)  # type: ignore[arg-type]


async def _search(
    http: httpx.AsyncClient, patient: str, onset: str, code: str | None = None
) -> list[Condition] | Evidence:
    params = {"patient": patient, "onset-date": onset} | ({"code": code} if code else {})
    response = await with_retries(lambda: http.get("/Condition", params=params))
    if response.status_code == 404 and _not_found(response):
        return Evidence(Reply.UNKNOWN_PATIENT, detail="the hospital does not know the patient")
    if response.status_code in (401, 403, 404, 429):
        # Our credentials, our address or our pace is wrong, not the claim: retry, and alert.
        raise Unavailable(f"the hospital answered HTTP {response.status_code}")
    if response.status_code != 200:
        return Evidence(Reply.UNREADABLE, detail=f"HTTP {response.status_code}")
    try:
        return parse_bundle(response.json())
    except Exception as error:  # a reply of any shape is evidence to read, never a crash
        return Evidence(Reply.UNREADABLE, detail=f"{type(error).__name__} in the Bundle")


def _not_found(response: httpx.Response) -> bool:
    """A FHIR OperationOutcome saying not-found: the patient is unknown (not a wrong URL)."""
    try:
        outcome = response.json()
        return outcome.get("resourceType") == "OperationOutcome" and any(
            issue.get("code") == "not-found" for issue in outcome.get("issue", [])
        )
    except Exception:
        return False


def parse_bundle(bundle: object) -> list[Condition]:
    """The Conditions of a FHIR searchset Bundle; raises on anything not shaped like one."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise Unreadable("not a FHIR Bundle")
    conditions = []
    for entry in bundle.get("entry") or []:
        resource = entry["resource"]
        if resource.get("resourceType") != "Condition":
            continue
        code = next(c["code"] for c in resource["code"]["coding"] if c["system"] == ICD10_SYSTEM)
        onset = resource.get("onsetDateTime") or resource["recordedDate"]
        status = _coded(resource.get("clinicalStatus"), CLINICAL_SYSTEM, "unknown")
        verification = _coded(resource.get("verificationStatus"), VERIFICATION_SYSTEM, "confirmed")
        conditions.append(
            Condition(str(code), date.fromisoformat(str(onset)[:10]), status, verification)
        )
    return conditions


def _coded(concept: object, system: str, missing: str) -> str:
    """The code of a CodeableConcept in `system`; `missing` when the element is absent."""
    if concept is None:
        return missing
    for coding in concept["coding"]:  # type: ignore[index]
        if coding.get("system") == system:
            return str(coding["code"])
    return missing
