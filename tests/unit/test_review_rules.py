"""The review's rules, pure: deadlines from the plan, which decisions need four eyes, who may
take a claim."""

from datetime import UTC, datetime, timedelta

from domain.plans import get_plan
from domain.review import (
    deadlines,
    needs_second_review,
    sample_draw,
    sampling_reason,
    take_refusal,
)

CRITICAL = get_plan("critical-illness")


def test_a_claim_is_escalated_before_it_is_due():
    opened = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    due = deadlines(opened, CRITICAL)
    assert due.escalate_at == opened + timedelta(hours=48) < due.due_at
    assert due.due_at == opened + timedelta(hours=72)


def test_every_rejection_and_every_large_approval_needs_a_second_reviewer():
    threshold = CRITICAL.second_review_from_fen
    assert needs_second_review(False, 1, CRITICAL)
    assert needs_second_review(False, None, CRITICAL)
    assert needs_second_review(True, threshold, CRITICAL)
    assert not needs_second_review(True, threshold - 1, CRITICAL)


def test_one_reviewer_at_a_time_and_never_the_first_twice():
    assert take_refusal("li", None, None) is None
    assert take_refusal("li", "li", None) is None
    assert "taken by wang" in take_refusal("li", "wang", None)
    assert "four eyes" in take_refusal("li", None, "li")
    assert take_refusal("wang", None, "li") is None


def test_the_sample_draw_is_the_same_for_the_same_seed_and_another_for_another():
    ids = [f"claim-{n}" for n in range(2000)]
    first = [sample_draw(b"seed", "critical-illness", i) for i in ids]
    assert first == [sample_draw(b"seed", "critical-illness", i) for i in ids]
    assert first != [sample_draw(b"other", "critical-illness", i) for i in ids]
    assert all(0 <= d < 1 for d in first)
    drawn = sum(1 for d in first if sampling_reason(d, 0, CRITICAL))
    assert 60 <= drawn <= 140  # about 5% of 2,000


def test_every_approval_above_the_value_threshold_is_drawn():
    above = CRITICAL.sample_above_fen + 1
    assert "above" in sampling_reason(0.99, above, CRITICAL)
    assert sampling_reason(0.99, CRITICAL.sample_above_fen, CRITICAL) is None
