"""Operators' metrics for Prometheus at /metrics (prometheus-client): the review queue by plan
and stage (waiting, overdue, escalated, the oldest's age), decisions per reviewer, the sample's
second looks (drawn, confirmed, overturned), the fraud flags by rule and outcome, and the
investigations (open, overdue, unassigned, with outside firms; findings by cause). Read from
the database at each scrape, so every API process answers the same; no member's data is in a
label."""

from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api import clock
from broker.database import engine
from domain.db import transaction
from domain.services import flags, investigations, review


class ReviewCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = clock.now()
        with transaction(engine()) as session:
            queue = review.queue_figures(session, now)
            decisions = review.decisions_by_reviewer(session)
            sample = review.sample_figures(session)
            raised = flags.figures(session)
            cases = investigations.case_figures(session, now)
            findings = investigations.finding_figures(session)
        yield from _queue(queue, now)
        by_reviewer = GaugeMetricFamily(
            "huzhu_review_decisions", "Decisions given, by reviewer.", labels=["reviewer"]
        )
        for reviewer, n in sorted(decisions.items()):
            by_reviewer.add_metric([reviewer], n)
        yield by_reviewer
        drawn = GaugeMetricFamily(
            "huzhu_review_sampled_claims",
            "Approvals by the rules drawn for a second look, by outcome.",
            labels=["outcome"],
        )
        pending = sample.sampled - sample.confirmed - sample.overturned
        for outcome, n in (("confirmed", sample.confirmed), ("overturned", sample.overturned)):
            drawn.add_metric([outcome], n)
        drawn.add_metric(["pending"], pending)
        yield drawn
        flagged = GaugeMetricFamily(
            "huzhu_review_flags",
            "Fraud flags raised, by rule and outcome (open, confirmed, cleared).",
            labels=["rule", "outcome"],
        )
        for (rule, outcome), n in sorted(raised.items()):
            flagged.add_metric([rule, outcome], n)
        yield flagged
        yield from _cases(cases, findings)
        rate = sample.overturn_rate
        yield GaugeMetricFamily(
            "huzhu_review_sample_overturn_ratio",
            "Of the sampled approvals decided, the share a person overturned.",
            value=rate if rate is not None else float("nan"),
        )


def _queue(figures: list[review.QueueFigures], now: datetime) -> Iterator[GaugeMetricFamily]:
    labels = ["plan", "stage"]
    families = {
        "waiting": GaugeMetricFamily(
            "huzhu_review_queue_claims", "Claims waiting for a person.", labels=labels
        ),
        "overdue": GaugeMetricFamily(
            "huzhu_review_overdue_claims", "Claims past their due time.", labels=labels
        ),
        "escalated": GaugeMetricFamily(
            "huzhu_review_escalated_claims", "Claims escalated.", labels=labels
        ),
        "oldest": GaugeMetricFamily(
            "huzhu_review_oldest_age_seconds", "Age of the oldest claim waiting.", labels=labels
        ),
    }
    for row in figures:
        key = [row.plan, row.stage]
        families["waiting"].add_metric(key, row.waiting)
        families["overdue"].add_metric(key, row.overdue)
        families["escalated"].add_metric(key, row.escalated)
        if row.oldest_opened_at is not None:
            families["oldest"].add_metric(key, (now - row.oldest_opened_at).total_seconds())
    yield from families.values()


def _cases(
    figures: list[investigations.CaseFigures], findings: dict[tuple[str, str], int]
) -> Iterator[GaugeMetricFamily]:
    families = {
        name: GaugeMetricFamily(f"huzhu_investigations_{name}", what, labels=["plan"])
        for name, what in (
            ("open", "Open investigations."),
            ("overdue", "Open investigations past their due time."),
            ("unassigned", "Open investigations no investigator holds."),
            ("with_firms", "Open investigations held by an outside firm."),
        )
    }
    for row in figures:
        for name, family in families.items():
            family.add_metric([row.plan], getattr(row, name))
    yield from families.values()
    closed = GaugeMetricFamily(
        "huzhu_investigations_closed",
        "Closed investigations, by cause and finding.",
        labels=["cause", "finding"],
    )
    for (cause, finding), n in sorted(findings.items()):
        closed.add_metric([cause, finding], n)
    yield closed


def metrics_endpoint() -> Callable[[Request], Awaitable[Response]]:
    """The /metrics endpoint, from a registry of our own (not the process's default, whose
    collectors a test's second app would register twice); read off the event loop, as the
    collector reads the database."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReviewCollector())

    async def metrics(_: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
