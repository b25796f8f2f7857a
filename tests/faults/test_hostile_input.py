"""Hostile submissions through a real worker: every one ends rejected with a reason (or decided),
none crashes the worker, and every submission is accounted for exactly once."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from broker.database import engine
from broker.submit import submit_claim
from domain.db import transaction
from domain.models import Claim
from domain.services.claims import submission_key
from tests.faults.support import all_decided, invariants_hold, start_worker
from tests.integration import support
from tests.integration.scenario import enrol, membership
from tests.integration.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ODD = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=50),
    st.sampled_from(
        ["'; DROP TABLE claim; --", "C73' OR '1'='1", "\x00", "2026-02-30", "9999-99-99"]
    ),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
FIELDS = ["submission_id", "member_ref", "plan", "icd10", "diagnosed_on", "hospital", "accident"]
GOODISH = {
    "submission_id": st.sampled_from(["dup-1", "dup-2"]) | st.text(min_size=1, max_size=200),
    "member_ref": st.sampled_from(["C0001", "C0002", "NOBODY"]) | ODD,
    "plan": st.sampled_from(["critical-illness", "senior-cancer", "gold"]) | ODD,
    "icd10": st.sampled_from(["C73", "J18.9", "Z99.9"]) | ODD,
    "diagnosed_on": st.dates().map(str) | ODD,
    "hospital": st.text(max_size=500) | ODD,
    "accident": st.booleans() | ODD,
}
SUBMISSION = st.one_of(
    # Fields missing, extra, of the wrong type, huge, odd, or hostile.
    st.fixed_dictionaries({}, optional=GOODISH | {"extra": ODD}).map(json.dumps),
    st.text(max_size=2000),  # not JSON at all
    st.just("[" * 10_000),  # nested deeper than any parser's patience
    st.just(json.dumps({"submission_id": "big", "hospital": "医" * 300_000})),  # oversized
)


@pytest.fixture
def running_worker(postgres_stack, tmp_path):
    enrol(membership(5, 0))
    with (tmp_path / "worker.log").open("w") as log:
        worker = start_worker(postgres_stack.env, log)
        yield worker
        support.stop_worker(worker)


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(SUBMISSION, min_size=40, max_size=40))
def test_hostile_submissions_are_each_accounted_for_and_never_crash_a_worker(running_worker, lines):
    with transaction(engine()) as session:
        before = session.exec(select(func.count()).select_from(Claim)).one()
        known = set(session.exec(select(Claim.submission_id)).all())
    for line in lines:
        submit_claim(line)
    expected = len(known | {submission_key(line.replace("\x00", "\\u0000")) for line in lines})
    wait_until(all_decided, 120, "every hostile submission decided")
    assert running_worker.poll() is None, "the worker must survive"
    with transaction(engine()) as session:
        claims = session.exec(select(Claim)).all()
    assert len(claims) == expected >= before
    for claim in claims:
        assert (claim.state == "rejected" and claim.reason_code) or claim.state != "rejected"
    assert sum(invariants_hold().claims.values()) == expected
