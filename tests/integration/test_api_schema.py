"""The members' API against its own OpenAPI schema (Schemathesis): every operation over real HTTP
with a valid token, no 5xx, and each answer's status, content type and body as declared."""

import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.auth import mint
from broker.app import reconfigure
from broker.settings import get_settings
from domain.calendar import next_announcement_day, start_of_day
from domain.terms import load_terms
from tests.integration.api_support import bearer, serving
from tests.integration.scenario import (
    CRITICAL,
    PUBLISH_AT,
    SENIOR,
    enrol,
    member,
    membership,
    reviewer_code,
    submission,
)
from tests.integration.test_disputes import claim_through_rules, close, publish

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Enough to reach the edges (huge ids, odd strings) and still a few seconds an operation.
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# The member caller's own claims and their children's, in several states, and another member's.
CLAIMS = ["settled-1", "announced-1", "review-1", "rejected-1", "others-1"]
# One past SQLite's largest INTEGER (PostgreSQL's id columns end sooner, at 2**31 - 1).
PAST_LAST_ID = 2**63
CALLERS = {
    "member": ("APPLICANT", set()),
    "staff": ("REVIEWER", {"reviewer", "investigator", "operator"}),
}


def records() -> list[int]:
    """Members and their claims, a closed cycle and an announced one; returns the cycles' ids."""
    enrol(
        [
            *membership(40, 0),
            member("APPLICANT", CRITICAL, 35, joined_days_ago=400),
            member("CHILD", CRITICAL, 8, joined_days_ago=400, payer="APPLICANT"),
            member("CHILD2", CRITICAL, 10, joined_days_ago=400, payer="APPLICANT"),
            member("OTHER", CRITICAL, 40, joined_days_ago=400),
        ]
    )
    claim_through_rules(submission("settled-1", "APPLICANT", "C73"))
    closed = publish()
    close()
    claim_through_rules(submission("announced-1", "CHILD", "C73"))
    announced = publish(start_of_day(next_announcement_day(PUBLISH_AT.date() + timedelta(days=1))))
    claim_through_rules(submission("review-1", "CHILD2", reviewer_code()))
    claim_through_rules(submission("rejected-1", "APPLICANT", "J18.9"))  # paid once already
    claim_through_rules(submission("others-1", "OTHER", "C73"))
    return [closed.id, announced.id]


def mixing_in(known: dict[str, list]) -> Callable:
    """A flatmap hook: each drawn value, a record's identifier of that name, or for an integer
    an id past the last a database row can have."""

    def hook(context, values):
        return st.fixed_dictionaries(
            {
                name: st.sampled_from(choices(value, known.get(name, [])))
                for name, value in (values or {}).items()
            }
        )

    return hook


def choices(value, ids: list) -> list:
    # Past the largest id the driver may overflow rather than find nothing.
    beyond = [PAST_LAST_ID] if type(value) is int else []
    return [value, *ids, *beyond]


def accepted_bodies() -> dict[str, dict]:
    """A body that gets past each write's validation to its rules, as a drawn one rarely does:
    a claim for the member caller's child, an applicant who answers every health question."""
    terms = load_terms()
    applicant = {
        "plan": CRITICAL,
        "birth_date": "1990-05-01",
        "sex": "F",
        "province": "浙江",
        "health_answers": {q.id: False for q in terms.health_questions},
        "debit_consent": {"version": terms.consent_version, "agreed": True},
    }
    return {
        "POST /v1/claims": json.loads(submission("sent-1", "CHILD", "C73")),
        "POST /v1/enrolments": applicant,
    }


def with_bodies(bodies: dict[str, dict]) -> Callable:
    def hook(context, body):
        accepted = bodies.get(context.operation.label)
        return st.sampled_from([body, accepted]) if accepted else st.just(body)

    return hook


@pytest.fixture(params=sorted(CALLERS))
def api_schema(request, sqlite_stack) -> Iterator[schemathesis.BaseSchema]:
    """The live app's own /openapi.json, its requests sent with the caller's token."""
    known = {"plan": [CRITICAL, SENIOR], "submission_id": CLAIMS, "cycle_id": records()}
    ref, roles = CALLERS[request.param]
    # Past the members' write limit every write would be a 429, its own checks never reached
    # (test_api tests the limit).
    reconfigure(get_settings().model_copy(update={"api_write_limit": "100000/minute"}))
    with serving() as client:
        schema = schemathesis.openapi.from_url(f"{client.base_url}/openapi.json")
        token = bearer(mint(get_settings(), ref, roles))
        schema.config.update(base_url=str(client.base_url), headers=token)

        # Drawn identifiers and bodies are rarely a record's or acceptable: offer the
        # fixture's too, so the 2xx answers are checked as well as the refusals.
        towards = mixing_in(known)
        schema.hook("flatmap_path_parameters")(towards)
        schema.hook("flatmap_query")(towards)
        schema.hook("flatmap_body")(with_bodies(accepted_bodies()))
        yield schema


@pytest.mark.slow
def test_every_operation_answers_as_its_schema_says(api_schema, subtests):
    # Schemathesis's pytest loader (from_fixture) relies on a pytest internal that pytest 9.2
    # removed (Node._nodeid): Hypothesis drives each operation here, a subtest each.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # Reads first: a write may end the caller's membership (POST /v1/me/exit).
    for operation in sorted(operations, key=lambda op: op.method.upper() != "GET"):
        with subtests.test(operation.label):
            answers_as_declared(operation)


def answers_as_declared(operation: schemathesis.APIOperation) -> None:
    # Valid requests only: Schemathesis cannot make an invalid one for an operation whose
    # inputs are all strings (a path's `plan`), and Hypothesis then fails it as unsatisfiable.
    @given(case=operation.as_strategy())
    @EXAMPLES
    def each(case):
        case.call_and_validate(checks=CHECKS)

    each()
