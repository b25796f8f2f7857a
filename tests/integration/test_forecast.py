"""`huzhu forecast`: the next share from the pipeline, from certain cases to every case paid."""

import json

from broker.database import engine
from domain.db import transaction
from domain.services import claims as claim_service
from domain.services import members as member_service
from tests.integration.scenario import (
    NOW_UTC,
    membership,
    review_by_records,
    reviewer_code,
    submission,
)
from tests.integration.support import huzhu


def test_the_forecast_ranges_from_the_approved_cases_to_the_whole_pipeline(sqlite_stack):
    member_service.import_members(
        engine(), enumerate(membership(40, 0), start=2), member_service.ImportReport()
    )
    lines = [
        submission("approved", "C0005", "C73"),
        submission("waits", "C0006", reviewer_code()),
        submission("rejected", "C0007", "J18.9"),
    ]
    for line in lines:
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(session, line, NOW_UTC)
        for step in (claim_service.accept, review_by_records):
            with transaction(engine()) as session:
                step(session, claim_id, NOW_UTC)
    result = json.loads(
        huzhu(sqlite_stack, "forecast", "--plan", "critical-illness", "--json").stdout
    )
    assert result["members"] == 40 and result["approval_rate"] == 0.5  # 1 approved, 1 rejected
    assert (result["low"]["cases"], result["high"]["cases"]) == (1, 2)
    # 40 members give at most 10 fen per patient.
    assert result["low"]["share_fen"] == 10 and result["high"]["share_fen"] == 20
    assert (
        result["low"]["share_fen"] <= result["expected"]["share_fen"] <= result["high"]["share_fen"]
    )
