"""What a member agrees to and answers to join (auto-debit consent, health declaration), and the
juror exam: read from data/terms.toml, judged here, pure."""

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TERMS_FILE = Path(__file__).parent / "data" / "terms.toml"


@dataclass(frozen=True)
class Question:
    id: str
    text_zh: str
    text_en: str = ""
    choices: tuple[str, ...] = ()
    answer: int | None = None


@dataclass(frozen=True)
class Terms:
    consent_version: str
    consent_zh: str
    consent_en: str
    health_questions: tuple[Question, ...]
    exam_questions: tuple[Question, ...]
    exam_pass_mark: int


@cache
def load_terms() -> Terms:
    raw = tomllib.loads(TERMS_FILE.read_text(encoding="utf-8"))
    exam = raw["juror_exam"]
    return Terms(
        consent_version=raw["consent"]["version"],
        consent_zh=raw["consent"]["text_zh"],
        consent_en=raw["consent"]["text_en"],
        health_questions=tuple(Question(**q) for q in raw["health_question"]),
        exam_questions=tuple(
            Question(**(q | {"choices": tuple(q["choices"])})) for q in exam["question"]
        ),
        exam_pass_mark=exam["pass_mark"],
    )


def consent_refusal(terms: Terms, version: str | None, agreed: bool) -> str | None:
    """Why this consent does not count, or None: it must be given, and to the text shown now."""
    if not agreed:
        return "the auto-debit consent was not given; no consent, no membership"
    if version != terms.consent_version:
        return f"the consent names version {version!r}; the current text is {terms.consent_version}"
    return None


def health_declaration(terms: Terms, answers: dict[str, bool]) -> str:
    """'passed' when every question is answered no; raises ValueError for a missing or unknown
    answer (the declaration is incomplete, not failed)."""
    asked = {q.id for q in terms.health_questions}
    if missing := asked - answers.keys():
        raise ValueError(f"the health declaration is missing answers to {sorted(missing)}")
    if unknown := answers.keys() - asked:
        raise ValueError(f"the health declaration has no questions {sorted(unknown)}")
    return "failed" if any(answers.values()) else "passed"


@dataclass(frozen=True)
class ExamResult:
    right: int
    asked: int
    passed: bool


def mark_exam(terms: Terms, answers: dict[str, int]) -> ExamResult:
    """Count the right answers; an unanswered question is wrong."""
    right = sum(answers.get(q.id) == q.answer for q in terms.exam_questions)
    return ExamResult(right, len(terms.exam_questions), right >= terms.exam_pass_mark)
