"""Each fraud flag's rule, pure: when it is raised and when it is not."""

from datetime import date

from domain import flags
from domain.records import Condition


def test_a_diagnosis_within_30_days_after_the_waiting_period_is_flagged():
    ends = date(2026, 9, 1)
    assert flags.early(date(2026, 9, 2), ends).rule == "early"
    assert flags.early(date(2026, 10, 1), ends) is not None  # the 30th day
    assert flags.early(date(2026, 10, 2), ends) is None
    assert flags.early(ends, ends) is None  # inside the waiting period: the rules' own matter


def test_several_claims_in_one_family_are_flagged():
    assert flags.family(1) is None
    assert "2 other claims" in flags.family(2).detail


def test_a_known_hospital_with_three_times_its_usual_rate_is_flagged():
    assert flags.hospital(recent=6, baseline=26) is not None  # 2 a week, now 6
    assert flags.hospital(recent=5, baseline=26) is None  # under 3 times
    assert flags.hospital(recent=4, baseline=0) is None  # too few to say
    assert flags.hospital(recent=500, baseline=12) is None  # a hospital new to the plan


def test_a_diagnosis_whose_share_jumps_is_flagged_as_the_thyroid_wave_was():
    # 31% of the recent claims against a usual 12% (相互宝's 2019 thyroid-cancer wave).
    assert flags.wave(31, 100, 120, 1000).rule == "wave"
    assert flags.wave(15, 100, 120, 1000) is None  # not twice the usual share
    assert flags.wave(3, 9, 120, 1000) is None  # too few recent claims
    assert flags.wave(31, 100, 0, 5) is None  # no half-year behind the plan


def test_a_related_condition_recorded_before_joining_is_flagged():
    joined = date(2025, 1, 1)
    angina = Condition("I20.0", date(2024, 6, 1), "active")
    assert flags.prior([angina], "I21.0", joined).rule == "prior"  # both in I20-I25
    assert "I20-I25" in flags.prior([angina], "I21.0", joined).detail
    after = Condition("I20.0", joined, "active")
    refuted = Condition("I20.0", date(2024, 6, 1), "refuted")
    elsewhere = Condition("J45.9", date(2024, 6, 1), "active")  # asthma: another block
    assert flags.prior([after, refuted, elsewhere], "I21.0", joined) is None
    assert flags.prior([angina], "not a code", joined) is None


def test_icd10_blocks_come_from_the_who_classification():
    assert flags.icd10_block("C34.1") == flags.icd10_block("C3410") == "C30-C39"
    assert flags.icd10_block("C73") == "C73-C75"
    assert flags.icd10_block("Q99.9") == "Q90-Q99"
    assert flags.icd10_block("Z00.0") != flags.icd10_block("C34.1")
    assert flags.icd10_block("C99") is None  # no such category
