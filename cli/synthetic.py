"""A realistic synthetic membership and claims, for the demo (Faker, seeded, reproducible)."""

import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from faker import Faker

from domain.calendar import SHANGHAI, add_years
from domain.illnesses import load_catalog
from domain.members import Enrolment, join_refusal
from domain.plans import get_plan

CRITICAL, SENIOR = "critical-illness", "senior-cancer"
# Where members lived, weighted roughly as the plan's published aided cases were.
PROVINCES = {
    "广东": 21,
    "山东": 16,
    "河南": 14,
    "江苏": 13,
    "湖北": 11,
    "浙江": 10,
    "四川": 9,
    "湖南": 8,
    "河北": 8,
    "安徽": 7,
    "福建": 6,
    "上海": 4,
    "北京": 4,
    "云南": 3,
    "新疆": 1,
}
# The first year's illness mix (MISSION.md): thyroid 24%, breast 12%, lung 8%, craniotomy
# (benign brain tumour) 8%, acute myocardial infarction 7%, the rest spread over others.
CRITICAL_MIX = {
    "C73": 24,
    "C50.9": 12,
    "C34.1": 8,
    "D33.0": 8,
    "I21.0": 7,
    "C18.7": 8,
    "C16.9": 7,
    "C53.9": 6,
    "C22.0": 6,
    "C92.0": 5,
    "C11.9": 5,
    "C15.9": 4,
}
FEMALE_ONLY = ("C50.9", "C53.9")
SENIOR_MIX = {"C34.1": 35, "C16.9": 20, "C18.7": 20, "C22.0": 15, "D05.1": 10}


@dataclass
class Scenario:
    members: list[Enrolment] = field(default_factory=list)
    # Claims file lines, in the order a member platform would send them.
    claims: list[str] = field(default_factory=list)


def build(members: int, claims: int, today: date, seed: int) -> Scenario:
    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    scenario = Scenario()
    for number in range(members):
        plan = SENIOR if rng.random() < 0.1 else CRITICAL
        scenario.members.append(_member(f"M{number:07d}", plan, today, rng, fake, scenario.members))
    special = _special_members(today, fake)
    scenario.members += special.values()
    scenario.claims = _claims(scenario.members, special, claims, today, rng, fake)
    return scenario


def _member(ref, plan, today, rng, fake, earlier) -> Enrolment:
    while True:
        joined_on = today - timedelta(days=rng.randint(1, 540))
        if plan == SENIOR:
            age = int(rng.triangular(60, 70, 62))
        elif rng.random() < 0.05:  # children, enrolled by a parent
            age = rng.randint(1, 17)
        else:  # mostly born in the 1980s and 1990s
            age = int(rng.triangular(18, 59, 34))
        birth = joined_on - timedelta(days=age * 365 + rng.randint(0, 364))
        payer = rng.choice(earlier[-50:]).member_ref if earlier and rng.random() < 0.1 else None
        row = _enrolment(ref, plan, birth, joined_on, rng, fake, payer)
        if join_refusal(get_plan(plan), row) is None:
            return row


def _enrolment(ref, plan, birth, joined_on, rng, fake, payer=None) -> Enrolment:
    sex = rng.choice("MF")
    name = fake.name_male() if sex == "M" else fake.name_female()
    moment = datetime.combine(joined_on, time(rng.randint(7, 22), rng.randint(0, 59)), SHANGHAI)
    return Enrolment(
        member_ref=ref,
        plan=plan,
        birth_date=birth,
        sex=sex,
        province=rng.choices(list(PROVINCES), weights=list(PROVINCES.values()))[0],
        joined_at=moment,
        payer_ref=payer,
        name=name,
        # Most members took the juror certification (900,000 had by March 2019).
        jury_certified=rng.random() < 0.8,
    )


def _special_members(today: date, fake) -> dict[str, Enrolment]:
    """Members whose claims show the unhappy paths: a recent joiner, one who turned 60."""
    rng = random.Random(0)
    recent = today - timedelta(days=20)
    turned_60 = add_years(today - timedelta(days=10), -60)
    return {
        "recent": _enrolment("M-RECENT-1", CRITICAL, date(1990, 5, 1), recent, rng, fake),
        "recent-accident": _enrolment("M-RECENT-2", CRITICAL, date(1992, 8, 9), recent, rng, fake),
        "aged": _enrolment("M-AGED-1", CRITICAL, turned_60, add_years(today, -2), rng, fake),
    }


def _claims(members, special, count, today, rng, fake) -> list[str]:
    settled = [
        m
        for m in members
        if m.member_ref.startswith("M0") and (today - m.joined_at.date()).days > 120
    ]
    # Three patients more than claims: the unhappy paths need members with no other claim.
    patients = rng.sample(settled, min(len(settled), count + 3))
    unhappy = _unhappy(patients, special, today, rng, fake) if count >= 16 else []
    good = [_good(n, m, today, rng, fake) for n, m in enumerate(patients[: count - len(unhappy)])]
    return [json.dumps(c, ensure_ascii=False) for c in good] + unhappy


def _good(number: int, member: Enrolment, today: date, rng, fake) -> dict:
    mix = dict(CRITICAL_MIX if member.plan == CRITICAL else SENIOR_MIX)
    if member.sex == "M":
        for female_only in FEMALE_ONLY:
            mix.pop(female_only, None)
    icd10 = rng.choices(list(mix), weights=list(mix.values()))[0]
    earliest = max(member.joined_at.date() + timedelta(days=91), today - timedelta(days=60))
    diagnosed = earliest + timedelta(days=rng.randint(0, max((today - earliest).days - 1, 0)))
    return _submission(f"S{number:06d}", member.member_ref, member.plan, icd10, diagnosed, fake)


def _submission(sid, ref, plan, icd10, diagnosed, fake, accident=False) -> dict:
    return {
        "submission_id": sid,
        "member_ref": ref,
        "plan": plan,
        "icd10": icd10,
        "diagnosed_on": diagnosed.isoformat(),
        "hospital": f"{fake.city()}人民医院",
        "accident": accident,
    }


def _unhappy(patients, special, today, rng, fake) -> list[str]:
    """One claim for each way a claim can go wrong, and two that need a person."""
    first, second, third, fourth = patients[0], patients[-1], patients[-2], patients[-3]
    yesterday = today - timedelta(days=1)
    reviewer_code = _reviewer_decided_code()
    cases = [
        # the same submission sent twice: one claim
        _good(0, first, today, rng, fake),
        # a second claim by a member whose first is under way
        _submission("X-DUPLICATE", first.member_ref, first.plan, "I21.0", yesterday, fake),
        _submission("X-UNKNOWN", "M9999999", CRITICAL, "C73", yesterday, fake),
        _submission("X-NOT-COVERED", second.member_ref, second.plan, "J18.9", yesterday, fake),
        _submission(
            "X-BEFORE-JOINING",
            third.member_ref,
            third.plan,
            "C73",
            third.joined_at.date() - timedelta(days=30),
            fake,
        ),
        _submission("X-WAITING", special["recent"].member_ref, CRITICAL, "C50.9", yesterday, fake),
        _submission("X-AGE", special["aged"].member_ref, CRITICAL, "C34.1", yesterday, fake),
        _submission(
            "R-ACCIDENT",
            special["recent-accident"].member_ref,
            CRITICAL,
            "S06.2",
            yesterday,
            fake,
            accident=True,
        ),
    ]
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]
    if reviewer_code:
        lines.append(
            json.dumps(
                _submission(
                    "R-CRITERIA", fourth.member_ref, fourth.plan, reviewer_code, yesterday, fake
                ),
                ensure_ascii=False,
            )
        )
    lines += [
        # malformed: a field missing, an impossible date, not JSON at all
        json.dumps({"submission_id": "X-MISSING", "member_ref": "M0000001", "plan": CRITICAL}),
        json.dumps(_submission("X-BAD-DATE", "M0000001", CRITICAL, "C73", today, fake)).replace(
            today.isoformat(), f"{today.year}-02-30"
        ),
        '{"submission_id": "X-BROKEN", "member_ref": ',
    ]
    return lines


def _reviewer_decided_code() -> str | None:
    for illness in load_catalog().covered_by(CRITICAL):
        if illness.decided_by == "reviewer":
            return illness.icd10[0].split("-")[0]
    return None
