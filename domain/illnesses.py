"""The illness catalog: which covered condition, if any, an ICD-10 code falls under in each plan."""

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).parent / "data" / "illnesses.toml"
SEVERITIES = ("severe", "mild")
DECIDERS = ("rules", "reviewer")

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# [0-9] and [A-Z], not \d and \w: those would let Unicode digits and letters through.
_CODE_SHAPE = re.compile(r"([A-Z])([0-9]{2})(?:\.?([0-9A-Z]{1,2}))?")
_CATEGORY = re.compile(r"[A-Z][0-9]{2}")
_FULL_CODE = re.compile(r"([A-Z][0-9]{2})\.([0-9A-Z]{1,2})")
_RANGE = re.compile(r"([A-Z][0-9]{2})-([A-Z][0-9]{2})")

_ILLNESS_FIELDS = {"code", "name_zh", "name_en", "plans", "severity", "decided_by", "icd10"}
_NAMED_FIELDS = {"name_zh", "name_en", "icd10"}


@dataclass(frozen=True)
class NamedKind:
    """A more specific name for part of an illness's codes, shown in announcements."""

    name_zh: str
    name_en: str
    icd10: tuple[str, ...]


@dataclass(frozen=True)
class Illness:
    code: str
    name_zh: str
    name_en: str
    plans: tuple[str, ...]
    severity: str
    decided_by: str
    icd10: tuple[str, ...]
    named: tuple[NamedKind, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    """What an ICD-10 code resolves to under one plan."""

    illness: Illness
    # The named kind's names when one matches, else the illness's own.
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Catalog:
    """The covered conditions; build it with build_catalog, which guarantees no overlaps."""

    illnesses: tuple[Illness, ...]

    def find(self, icd10: str, plan: str) -> Diagnosis | None:
        """The condition covering this code under this plan, or None.

        None also answers a code that is not shaped like ICD-10; a caller that must tell the two
        apart checks normalise_icd10 first.
        """
        code = normalise_icd10(icd10)
        if code is None:
            return None
        for illness in self.illnesses:
            if plan in illness.plans and any(_holds(item, code) for item in illness.icd10):
                for kind in illness.named:
                    if any(_holds(item, code) for item in kind.icd10):
                        return Diagnosis(illness, kind.name_zh, kind.name_en)
                return Diagnosis(illness, illness.name_zh, illness.name_en)
        return None

    def by_code(self, code: str) -> Illness:
        for illness in self.illnesses:
            if illness.code == code:
                return illness
        raise KeyError(f"unknown illness {code!r}")

    def covered_by(self, plan: str) -> tuple[Illness, ...]:
        return tuple(illness for illness in self.illnesses if plan in illness.plans)


def normalise_icd10(code: str) -> str | None:
    """The code in catalog form ("c341" -> "C34.1"), or None if it is not shaped like ICD-10.

    Only the shape is checked: whether WHO defines the code is the catalog tests' business,
    so the domain needs no ICD-10 package at run time.
    """
    match = _CODE_SHAPE.fullmatch(code.strip().upper())
    if match is None:
        return None
    letter, digits, subdivision = match.groups()
    if subdivision is None:
        return f"{letter}{digits}"
    return f"{letter}{digits}.{subdivision}"


def code_in_item(code: str, item: str) -> bool:
    """Whether a code falls under a catalog item: a category range, a category or a full code.

    "C00-C97" holds every code whose category is in the range; "I21" holds "I21" and "I21.x";
    "N18.5" holds "N18.5" and anything deeper, such as "N18.50".
    """
    normal = normalise_icd10(code)
    return normal is not None and _holds(item, normal)


def _holds(item: str, code: str) -> bool:
    """code_in_item for a code already in catalog form: lookups run it for every item."""
    category, _, subdivision = code.partition(".")
    first, last, item_subdivision = _span(item)
    if not first <= category <= last:
        return False
    return item_subdivision is None or subdivision.startswith(item_subdivision)


def items_overlap(one: str, other: str) -> bool:
    """Whether some code would fall under both items."""
    first_a, last_a, sub_a = _span(one)
    first_b, last_b, sub_b = _span(other)
    if last_a < first_b or last_b < first_a:
        return False
    if sub_a is None or sub_b is None:
        return True
    return sub_a.startswith(sub_b) or sub_b.startswith(sub_a)


def item_within(inner: str, outer: str) -> bool:
    """Whether every code under `inner` also falls under `outer`."""
    first_in, last_in, sub_in = _span(inner)
    first_out, last_out, sub_out = _span(outer)
    if not (first_out <= first_in and last_in <= last_out):
        return False
    return sub_out is None or (sub_in is not None and sub_in.startswith(sub_out))


def check_item(item: object) -> str | None:
    """What is wrong with a catalog item, or None if it is well formed."""
    if not isinstance(item, str):
        return f"item {item!r} is not a string"
    if _CATEGORY.fullmatch(item) or _FULL_CODE.fullmatch(item):
        return None
    match = _RANGE.fullmatch(item)
    if match is None:
        return f"item {item!r} is not a category (I21), a code (N18.5) or a range (C00-C97)"
    first, last = match.groups()
    if first[0] != last[0]:
        return f"range {item!r} crosses letters"
    if first >= last:
        return f"range {item!r} is not in ascending order"
    return None


@cache  # a catalog has a few hundred items, and every lookup asks about each of them
def _span(item: str) -> tuple[str, str, str | None]:
    """First and last category an item reaches, and the subdivision it is narrowed to."""
    if _CATEGORY.fullmatch(item):
        return item, item, None
    if match := _FULL_CODE.fullmatch(item):
        category, subdivision = match.groups()
        return category, category, subdivision
    if match := _RANGE.fullmatch(item):
        first, last = match.groups()
        return first, last, None
    raise ValueError(f"malformed ICD-10 catalog item {item!r}")


def build_catalog(data: Mapping[str, Any]) -> Catalog:
    """Build the catalog from parsed TOML, refusing any entry that would make a lookup ambiguous."""
    entries = data.get("illness")
    if not isinstance(entries, list) or not entries:
        raise ValueError("illness catalog: no [[illness]] tables")
    illnesses = tuple(_parse_illness(entry, position) for position, entry in enumerate(entries, 1))

    seen: set[str] = set()
    for illness in illnesses:
        if illness.code in seen:
            raise ValueError(f"illness {illness.code!r}: the code is used twice")
        seen.add(illness.code)

    # A code must name one condition per plan, or the amount and the reviewer rule are a guess.
    plans = sorted({plan for illness in illnesses for plan in illness.plans})
    for plan in plans:
        claimed = [
            (illness.code, item)
            for illness in illnesses
            if plan in illness.plans
            for item in illness.icd10
        ]
        for index, (owner, item) in enumerate(claimed):
            for other_owner, other_item in claimed[index + 1 :]:
                if owner != other_owner and items_overlap(item, other_item):
                    raise ValueError(
                        f"illness {other_owner!r}: {other_item} overlaps {item} of {owner!r}"
                        f" in plan {plan!r}"
                    )
    return Catalog(illnesses)


def _parse_illness(raw: object, position: int) -> Illness:
    if not isinstance(raw, Mapping):
        raise ValueError(f"illness #{position}: not a table")
    code = raw.get("code")
    label = f"illness {code!r}" if isinstance(code, str) else f"illness #{position}"

    unknown = set(raw) - _ILLNESS_FIELDS - {"named"}
    if unknown:
        raise ValueError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = _ILLNESS_FIELDS - set(raw)
    if missing:
        raise ValueError(f"{label}: missing field(s) {', '.join(sorted(missing))}")
    if not isinstance(code, str) or not _SLUG.fullmatch(code):
        raise ValueError(f"{label}: code must be a lower-case ASCII slug such as 'deep-coma'")
    name_zh = _text(raw, "name_zh", label)
    name_en = _text(raw, "name_en", label)

    plans = raw["plans"]
    if not _is_list_of_str(plans) or not plans or len(set(plans)) != len(plans):
        raise ValueError(f"{label}: plans must be a non-empty list of distinct plan codes")
    if raw["severity"] not in SEVERITIES:
        raise ValueError(f"{label}: severity {raw['severity']!r} is not one of {SEVERITIES}")
    if raw["decided_by"] not in DECIDERS:
        raise ValueError(f"{label}: decided_by {raw['decided_by']!r} is not one of {DECIDERS}")

    icd10 = _items(raw["icd10"], label)
    raw_named = raw.get("named", [])
    if not isinstance(raw_named, list):
        raise ValueError(f"{label}: named must be a list of [[illness.named]] tables")
    named = tuple(_parse_named(entry, icd10, label) for entry in raw_named)
    for index, kind in enumerate(named):
        for other in named[index + 1 :]:
            if any(items_overlap(a, b) for a in kind.icd10 for b in other.icd10):
                raise ValueError(f"{label}: named {kind.name_en!r} overlaps {other.name_en!r}")

    return Illness(
        code=code,
        name_zh=name_zh,
        name_en=name_en,
        plans=tuple(plans),
        severity=raw["severity"],
        decided_by=raw["decided_by"],
        icd10=icd10,
        named=named,
    )


def _parse_named(raw: object, parent_items: tuple[str, ...], label: str) -> NamedKind:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{label}: a named entry is not a table")
    unknown = set(raw) - _NAMED_FIELDS
    missing = _NAMED_FIELDS - set(raw)
    if unknown or missing:
        raise ValueError(f"{label}: a named entry needs exactly {', '.join(sorted(_NAMED_FIELDS))}")
    name_zh = _text(raw, "name_zh", label)
    name_en = _text(raw, "name_en", label)
    where = f"{label}, named {name_en!r}"
    items = _items(raw["icd10"], where)
    for item in items:
        # A name shown for codes the illness does not cover would announce the wrong thing.
        if not any(item_within(item, parent) for parent in parent_items):
            raise ValueError(f"{where}: {item} lies outside the illness's codes")
    return NamedKind(name_zh=name_zh, name_en=name_en, icd10=items)


def _items(raw: object, label: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{label}: icd10 must be a non-empty list")
    for item in raw:
        problem = check_item(item)
        if problem:
            raise ValueError(f"{label}: {problem}")
    for index, item in enumerate(raw):
        for other in raw[index + 1 :]:
            if items_overlap(item, other):
                raise ValueError(f"{label}: {item} overlaps {other}")
    return tuple(raw)


def _text(raw: Mapping[str, Any], field: str, label: str) -> str:
    value = raw[field]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{label}: {field} must be non-empty text")
    return value


def _is_list_of_str(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with the code, read once per process."""
    with CATALOG_FILE.open("rb") as file:
        return build_catalog(tomllib.load(file))
