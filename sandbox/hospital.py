"""A sandbox FHIR R4 hospital-records server: Condition search by patient, ICD-10 code and onset."""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import FaultMiddleware, Faults, sandbox_routes

FHIR_JSON = "application/fhir+json"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# Without a records file, these patients are the ones the hospital has never seen.
UNKNOWN_PREFIX = "UNKNOWN"

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
COMPARATORS = {
    "eq": lambda onset, bound: onset == bound,
    "ne": lambda onset, bound: onset != bound,
    "lt": lambda onset, bound: onset < bound,
    "le": lambda onset, bound: onset <= bound,
    "gt": lambda onset, bound: onset > bound,
    "ge": lambda onset, bound: onset >= bound,
}


@dataclass(frozen=True)
class Record:
    icd10: str
    onset: date
    clinical_status: str = "active"


class BadSearch(ValueError):
    """A search parameter the server cannot read (FHIR answers 400)."""


def load_records(path: Path | str) -> dict[str, Any]:
    """Read a records file, checking it now so a bad file fails at start, not at first search."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    _parse_records(records)
    return records


def _parse_records(records: dict[str, Any]) -> tuple[dict[str, list[Record]], set[str]]:
    if not isinstance(records, dict) or not isinstance(records.get("patients", {}), dict):
        raise ValueError('records must be an object with a "patients" object')
    patients: dict[str, list[Record]] = {}
    for patient, conditions in records.get("patients", {}).items():
        if not isinstance(conditions, list):
            raise ValueError(f"patient {patient}: conditions must be a list")
        try:
            patients[patient] = [
                Record(
                    icd10=str(c["icd10"]).strip().upper(),
                    onset=date.fromisoformat(c["onset"]),
                    clinical_status=c.get("clinical_status", "active"),
                )
                for c in conditions
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"patient {patient}: bad condition ({error})") from error
    unknown = records.get("unknown_patients", [])
    if not isinstance(unknown, list):
        raise ValueError("unknown_patients must be a list")
    return patients, set(unknown)


def code_matches(recorded: str, searched: str) -> bool:
    """The code searched for, or a more specific one under it: C73 finds C73 and C73.0."""
    recorded, searched = recorded.upper(), searched.upper()
    return recorded == searched or recorded.startswith(searched + ".")


def _parse_code(value: str) -> list[str]:
    """One `code` parameter: comma-separated alternatives of `system|code` or a bare `code`.
    Alternatives in another system (or explicitly in none, `|C73`) can match nothing here."""
    codes = []
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        code = code.strip()
        if not code:
            raise BadSearch(f"code has no code in {token!r}")
        if bar and system != ICD10:
            continue
        codes.append(code.upper())
    return codes


def _parse_onset(value: str) -> tuple[str, date]:
    prefix, bound = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix not in COMPARATORS:
        raise BadSearch(f"onset-date prefix {prefix!r} is not supported")
    if not DATE.fullmatch(bound):
        raise BadSearch(f"onset-date {value!r} is not a date YYYY-MM-DD")
    try:
        return prefix, date.fromisoformat(bound)
    except ValueError as error:
        raise BadSearch(f"onset-date {value!r}: {error}") from error


def _matches(record: Record, codes: list[list[str]], onsets: list[tuple[str, date]]) -> bool:
    # Repeated parameters are ANDed, comma-separated alternatives ORed, as in FHIR search.
    return all(any(code_matches(record.icd10, c) for c in group) for group in codes) and all(
        COMPARATORS[prefix](record.onset, bound) for prefix, bound in onsets
    )


def _condition_id(patient: str, record: Record, index: int) -> str:
    # FHIR ids allow [A-Za-z0-9-.]{1,64}; a digest keeps any patient reference within that.
    digest = hashlib.sha1(f"{patient}|{record.icd10}|{record.onset}|{index}".encode())
    return "cond-" + digest.hexdigest()[:16]


def condition_resource(patient: str, record: Record, index: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": _condition_id(patient, record, index),
        "subject": {"reference": f"Patient/{patient}"},
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": record.clinical_status}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION_STATUS, "code": "confirmed"}]},
        "code": {"coding": [{"system": ICD10, "code": record.icd10}]},
        "onsetDateTime": record.onset.isoformat(),
        "recordedDate": record.onset.isoformat(),
    }


def operation_outcome(status: int, code: str, diagnostics: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _unavailable() -> Response:
    return operation_outcome(503, "transient", "service unavailable (sandbox fault)")


class Hospital:
    """What the hospital knows. Without records it confirms every diagnosis as submitted and
    knows of no earlier condition, so the claims pipeline can run end to end on any data."""

    def __init__(self, records: dict[str, Any] | None) -> None:
        self.confirm_all = records is None
        self.patients, self.unknown = (
            _parse_records(records) if records is not None else ({}, set())
        )

    def knows(self, patient: str) -> bool:
        if self.confirm_all:
            return not patient.startswith(UNKNOWN_PREFIX)
        return patient in self.patients and patient not in self.unknown

    def records_of(
        self, patient: str, codes: list[list[str]], onsets: list[tuple[str, date]]
    ) -> list[Record]:
        if not self.confirm_all:
            return self.patients[patient]
        if not codes or not codes[0]:
            return []  # asked for anything on file: nothing earlier than the claim
        said = [bound for prefix, bound in onsets if prefix == "eq"]
        return [Record(icd10=codes[0][0], onset=said[0] if said else date.today())]


def make_hospital_app(
    records: dict[str, Any] | None = None, faults: Faults | None = None
) -> Starlette:
    hospital = Hospital(records)
    faults = faults if faults is not None else Faults()

    async def search_conditions(request: Request) -> Response:
        patients = [p.strip() for p in request.query_params.getlist("patient") if p.strip()]
        if not patients:
            return operation_outcome(400, "required", "search parameter 'patient' is required")
        # A FHIR reference parameter may come as "Patient/<id>" or as the bare id.
        patient = patients[0].removeprefix("Patient/")
        try:
            codes = [_parse_code(v) for v in request.query_params.getlist("code")]
            onsets = [_parse_onset(v) for v in request.query_params.getlist("onset-date")]
        except BadSearch as error:
            return operation_outcome(400, "invalid", str(error))
        if not hospital.knows(patient):
            return operation_outcome(404, "not-found", f"no patient {patient} at this hospital")
        base = str(request.base_url)
        entries = []
        for index, record in enumerate(hospital.records_of(patient, codes, onsets)):
            if not _matches(record, codes, onsets):
                continue
            resource = condition_resource(patient, record, index)
            entries.append(
                {
                    "fullUrl": f"{base}Condition/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": "match"},
                }
            )
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": entries,
        }
        return JSONResponse(bundle, media_type=FHIR_JSON)

    routes = [
        *sandbox_routes(faults, reset_state=lambda: None),  # records are set-up, not state
        Route("/Condition", search_conditions, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultMiddleware, faults=faults, unavailable=_unavailable)],
    )
    app.state.faults = faults
    app.state.hospital = hospital
    return app
