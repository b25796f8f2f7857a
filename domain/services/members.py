"""Members in the database: bulk enrolment, voluntary exit, and who shares at a moment."""

import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TypeVar

from sqlalchemy import ColumnElement, CursorResult, Engine, and_, or_, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, insert, select

from domain.calendar import add_years, local_date, start_of_day
from domain.db import transaction
from domain.members import (
    Applicant,
    Enrolment,
    ExitReason,
    exit_refusal,
    join_refusal,
    refusal_code,
)
from domain.models import CycleStatus, DebitConsent, Member, MemberEvent, SharingCycle
from domain.plans import get_plan, load_plans
from domain.services import winddown
from domain.services.store import for_update, lock_member_ref, lock_plan
from domain.winddown import WindDown

BATCH = 2_000
BATCH_ROWS = 1_000  # rows handed from the validating thread to the COPY at a time
T = TypeVar("T")
Row = Enrolment | Applicant  # a row as the CLI reads it; both carry the same fields


def shares_at(cutoff: datetime) -> ColumnElement[bool]:
    """Member rows in a plan at `cutoff`: joined by then and not yet left.

    Members still in the waiting period share; later joiners don't; later leavers still pay.
    """
    return and_(
        col(Member.joined_at) <= cutoff,
        or_(col(Member.exited_at).is_(None), col(Member.exited_at) > cutoff),
    )


@dataclass
class ImportReport:
    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def import_members(
    engine: Engine, rows: Iterable[tuple[int, Row | str]], report: ImportReport
) -> None:
    """Enrol validated rows: PostgreSQL streams them with COPY and checks them set-based in SQL,
    SQLite inserts them in batches. A row given as a string is a parse error for its line."""
    if engine.dialect.name == "postgresql":
        copy_import(engine, rows, report)
    else:
        batched_import(engine, rows, report)


def batched_import(
    engine: Engine, rows: Iterable[tuple[int, Row | str]], report: ImportReport
) -> None:
    """One transaction per batch, so a large file commits as it goes and memory stays flat."""
    for batch in _batches(rows, BATCH):
        with transaction(engine) as session:
            import_batch(session, batch, report)


def import_batch(
    session: Session,
    batch: list[tuple[int, Row | str]],
    report: ImportReport,
    now: datetime | None = None,
) -> None:
    """Enrol a batch of rows, each checked; `now` is when they are enrolled (the wall clock for
    a file, whose joined_at may be earlier; the app's clock for the app)."""
    now = now or datetime.now(UTC)
    for plan in sorted({row.plan for _, row in batch if not isinstance(row, str)}):
        lock_plan(session, plan, shared=True)
    fixed = published_cutoffs(session)
    ending = winddown.wind_downs(session)
    good: list[tuple[int, Row]] = []
    for line, row in batch:
        if isinstance(row, str):
            report.refused.append((line, row))
        elif refusal := join_refusal(get_plan(row.plan), row):
            report.refused.append((line, refusal))
        elif row.plan in ending and not _joins(ending[row.plan], row.joined_at, now):
            report.refused.append((line, _winding_down(ending[row.plan])))
        elif row.plan in fixed and row.joined_at <= fixed[row.plan]:
            report.refused.append((line, _before_cutoff(fixed[row.plan])))
        else:
            good.append((line, row))
    _insert_batch(session, good, report)


def _joins(rules: WindDown, joined_at: datetime, now: datetime) -> bool:
    """No one joins from the announcement: not with a joined_at from it, nor enrolled after it
    with an earlier one (a file's rows carry the date they give)."""
    return rules.accepts_members(joined_at) and rules.accepts_members(now)


def _winding_down(rules) -> str:
    return (
        f"{rules.plan} is winding down: no one joins from {rules.announce_at.isoformat()}, "
        f"and it ends {rules.end_at.isoformat()}"
    )


def _before_cutoff(cutoff: datetime) -> str:
    return (
        f"joined_at is before {cutoff.isoformat()}, the cut-off of "
        "a published cycle, whose members are fixed"
    )


def _already_member(member_ref: str, plan: str) -> str:
    return f"{member_ref} is already a member of {plan}"


def _payer_unknown(payer_ref: str) -> str:
    return f"payer {payer_ref} is not a member (enrol them first)"


def exit_moment(session: Session, plan: str, at: datetime) -> datetime:
    """When a membership ends for a reason found at `at`: never before a published cut-off,
    whose sharing members are fixed (the member still shares in that cycle)."""
    published = published_cutoffs(session).get(plan)
    if published is not None and at <= published:
        return published + timedelta(microseconds=1)
    return at


def published_cutoffs(session: Session) -> dict[str, datetime]:
    """Each plan's latest cut-off whose members are fixed (its cycle is announced or later)."""
    rows = session.exec(
        select(SharingCycle.plan, func.max(SharingCycle.cutoff_at))
        .where(SharingCycle.status != CycleStatus.OPEN)
        .group_by(SharingCycle.plan)
    ).all()
    return {plan: cutoff for plan, cutoff in rows}


def _insert_batch(session: Session, rows: list[tuple[int, Row]], report: ImportReport) -> None:
    pending = _new_members_only(session, rows, report)
    payers = _payer_ids(session, {row.payer_ref for _, row in pending if row.payer_ref})
    # A payer may be enrolled in the same file, just before their family: insert in rounds,
    # each round the rows whose payer is now known.
    while pending:
        ready = [(n, row) for n, row in pending if not row.payer_ref or row.payer_ref in payers]
        if not ready:
            break
        session.exec(insert(Member), params=[_member_values(row, payers) for _, row in ready])
        session.flush()
        report.imported += len(ready)
        done = {line for line, _ in ready}
        pending = [(line, row) for line, row in pending if line not in done]
        payers |= _payer_ids(session, {row.payer_ref for _, row in pending if row.payer_ref})
    for line, row in pending:
        report.refused.append((line, _payer_unknown(row.payer_ref)))


def _new_members_only(
    session: Session, rows: list[tuple[int, Row]], report: ImportReport
) -> list[tuple[int, Row]]:
    keys = {(row.plan, row.member_ref) for _, row in rows}
    taken = set()
    if keys:
        taken = set(
            session.exec(
                select(Member.plan, Member.member_ref).where(
                    tuple_(Member.plan, Member.member_ref).in_(list(keys))
                )
            ).all()
        )
    fresh = []
    for line, row in rows:
        key = (row.plan, row.member_ref)
        if key in taken:
            report.refused.append((line, _already_member(row.member_ref, row.plan)))
        else:
            taken.add(key)
            fresh.append((line, row))
    return fresh


def _member_values(row: Row, payers: dict[str, int]) -> dict:
    return {
        "member_ref": row.member_ref,
        "plan": row.plan,
        "name": row.name,
        "birth_date": row.birth_date,
        "sex": row.sex,
        "province": row.province,
        "joined_at": row.joined_at,
        "payer_id": payers.get(row.payer_ref) if row.payer_ref else None,
        "jury_certified": row.jury_certified,
    }


def _payer_ids(session: Session, refs: set[str]) -> dict[str, int]:
    """Member ids of the payers still in a plan; a payer pays for family in any plan."""
    if not refs:
        return {}
    rows = session.exec(
        select(Member.member_ref, func.min(Member.id))
        .where(
            # Every plan named, so that the (plan, member_ref) key finds them.
            col(Member.plan).in_(list(load_plans())),
            col(Member.member_ref).in_(refs),
            col(Member.exited_at).is_(None),
        )
        .group_by(Member.member_ref)
    ).all()
    return {ref: member_id for ref, member_id in rows}


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


# The PostgreSQL path. A thread validates the rows while this one streams them with COPY into a
# temporary staging table, a chunk at a time; each chunk is then checked with one statement per
# rule and moved into `member` with INSERT ... SELECT while the thread validates the next one, so
# Python and PostgreSQL work side by side, each on its own core. The thread pauses while this
# one streams a chunk, unless it runs out of rows.
CHUNK = 50_000  # rows staged, checked and inserted together
# How long the validating thread may keep the GIL when this one wants it back (Python's default
# is 5 ms). This thread makes about ten round trips to PostgreSQL a chunk, each giving the GIL
# up; with the default, each waits up to 5 ms to get it back: 1M rows took 24 s, with 0.5 ms 17.
HANDOVER_SECONDS = 0.0005
# The staging table's columns as COPY writes them, with their PostgreSQL types (binary COPY).
STAGED = {
    "line": "int8",
    "member_ref": "text",
    "plan": "text",
    "name": "text",
    "birth_date": "date",
    "sex": "text",
    "province": "text",
    "joined_at": "timestamptz",
    "payer_ref": "text",
    "jury_certified": "bool",
}
PLAN_AT = list(STAGED).index("plan")
MOVED_COLUMNS = "member_ref, plan, name, birth_date, sex, province, joined_at, jury_certified"
# A payer may be in any plan. Naming every plan lets PostgreSQL find the payer through the
# (plan, member_ref) unique index, where `member_ref = ...` alone would read the whole table.
PAYER_ID = """SELECT min(m.id) FROM member m
    WHERE m.plan = ANY(:plans) AND m.member_ref = {row}.payer_ref AND m.exited_at IS NULL"""
# A payer staged in the same chunk, who goes in with it: no staged row of that member_ref has
# a payer of its own (so none of them waits) and one repeats no waiting row (so it is not
# refused as a repeat); one already a member fails the plain insert, and the family waits
# after all. IN and NOT IN are hashed once, where a join, planned without statistics on the
# staging table, may scan the chunk once per row.
PAID_IN_CHUNK = """s.payer_ref IN (SELECT h.member_ref FROM member_staging h
        WHERE h.payer_ref IS NULL AND NOT EXISTS (SELECT 1 FROM member_waiting w
            WHERE w.plan = h.plan AND w.member_ref = h.member_ref))
    AND s.payer_ref NOT IN (SELECT f.member_ref FROM member_staging f
        WHERE f.payer_ref IS NOT NULL)"""
IS_MEMBER = "SELECT 1 FROM member m WHERE m.plan = {row}.plan AND m.member_ref = {row}.member_ref"
UNIQUE_VIOLATION = "23505"
# Savepoints that wrote one import may take: a chunk's insert, and a family round that enrolled
# someone. Each is a subtransaction, and past 64 in one transaction PostgreSQL's per-backend
# cache of them overflows: until the import ends, every other session's snapshot must then look
# our subtransactions up on disk. Beyond the budget (about 3M rows when families come with
# their payer), chunks go in the ON CONFLICT way, which needs no savepoint.
SAVEPOINTS = 60


def copy_import(
    engine: Engine, rows: Iterable[tuple[int, Row | str]], report: ImportReport
) -> None:
    """Enrol a whole file in one transaction: COPY is all-or-nothing anyway, a row's checks
    must still hold when it goes in, and a file that failed can simply be imported again.

    Memory stays flat: a few chunks of rows at a time, and the refused rows (the report)."""
    validating = threading.Event()
    with (
        _switch_interval(HANDOVER_SECONDS),
        transaction(engine) as session,
        closing(_in_background(_joinable(rows, report), BATCH_ROWS, validating)) as batches,
    ):
        _tune_for_chunks(session)
        _create_staging(session)
        locked: set[str] = set()
        while plans := _stage(session, islice(batches, CHUNK // BATCH_ROWS), validating):
            _check_and_insert(session, plans, locked, report)
        _refuse_waiting(session, report)


@contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    """Python's thread switch interval set to `seconds` meanwhile, then set back."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _tune_for_chunks(session: Session) -> None:
    """Settings of this transaction only. The staging tables have no statistics, and the
    planner, guessing, would sort a whole chunk to merge-join it with a few waiting rows:
    hashing the smaller side is always right here. JIT compiling costs more than it saves on
    a chunk (the per-row index look-ups make the estimates look large); sorting or hashing a
    chunk fits in 64 MB."""
    session.execute(text("SET LOCAL enable_mergejoin = off"))
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))


def _create_staging(session: Session) -> None:
    """The staging tables, without indexes. Each row draws its member id when staged, so the
    rows that did not go in can be told by id."""
    sequence = session.execute(text("SELECT pg_get_serial_sequence('member', 'id')")).scalar_one()
    columns = ", ".join(f"{column} {kind}" for column, kind in STAGED.items())
    session.execute(
        text(
            f"CREATE TEMP TABLE member_staging (id bigint DEFAULT nextval('{sequence}'), "
            f"{columns}) ON COMMIT DROP"
        )
    )
    # Rows whose payer is not a member yet wait here, across chunks, until the payer is.
    session.execute(text("CREATE TEMP TABLE member_waiting (LIKE member_staging) ON COMMIT DROP"))


def _joinable(rows: Iterable[tuple[int, Row | str]], report: ImportReport) -> Iterator[tuple]:
    """The rows that pass their plan's joining rules, as staged; the others go to the report."""
    rules = load_plans()
    for line, row in rows:
        if isinstance(row, str):
            report.refused.append((line, row))
        elif refusal := join_refusal(rules[row.plan], row):
            report.refused.append((line, refusal))
        else:
            yield (
                line,
                row.member_ref,
                row.plan,
                row.name,
                row.birth_date,
                row.sex,
                row.province,
                row.joined_at,
                row.payer_ref,
                row.jury_certified,
            )


def _stage(
    session: Session, batches: Iterable[list[tuple]], validating: threading.Event
) -> set[str]:
    """COPY the next chunk into the emptied staging table; the plans its rows join (none: the
    file is done). Collected here, where the rows pass anyway, rather than read back.

    The validating thread pauses meanwhile, having made the chunk's rows while PostgreSQL
    checked the last one: side by side, the two threads would take turns with the GIL, and
    this one, giving it up at every write to the socket, would wait for it each time."""
    session.execute(text("TRUNCATE member_staging"))
    plans: set[str] = set()
    columns = ", ".join(STAGED)
    psycopg_connection = session.connection().connection.driver_connection
    validating.clear()
    try:
        with (
            psycopg_connection.cursor() as cursor,
            cursor.copy(f"COPY member_staging ({columns}) FROM STDIN (FORMAT binary)") as copy,
        ):
            copy.set_types(list(STAGED.values()))
            for batch in batches:
                for row in batch:
                    copy.write_row(row)
                plans.update({row[PLAN_AT] for row in batch})
    finally:
        validating.set()
    return plans


def _check_and_insert(
    session: Session, plans: set[str], locked: set[str], report: ImportReport
) -> None:
    """The staged chunk's checks, in the order of the batched path, and its inserts."""
    _lock_plans(session, plans, locked)
    _refuse_before_cutoffs(session, locked, report)
    _refuse_winding_down(session, locked, report)
    _hold_for_payers(session, chunk_pays=True)
    _refuse_repeats_of_waiting(session, report)
    _insert_staged(session, report)
    # Each round enrols the rows whose payer the round before enrolled.
    while enrolled := _insert_families(session):
        report.imported += enrolled


def _lock_plans(session: Session, plans: set[str], locked: set[str]) -> None:
    """Lock the plans the chunk joins, once each; held to the end, so the cut-offs read after
    locking hold for every later chunk too."""
    for plan in sorted(plans - locked):
        lock_plan(session, plan, shared=True)
    locked |= plans


def _refuse_before_cutoffs(session: Session, plans: set[str], report: ImportReport) -> None:
    fixed = published_cutoffs(session)
    for plan in sorted(plans & fixed.keys()):
        refusal = _before_cutoff(fixed[plan])
        lines = session.execute(
            text(
                "DELETE FROM member_staging WHERE plan = :plan AND joined_at <= :cutoff "
                "RETURNING line"
            ),
            {"plan": plan, "cutoff": fixed[plan]},
        ).scalars()
        report.refused.extend((line, refusal) for line in lines)


def _refuse_winding_down(session: Session, plans: set[str], report: ImportReport) -> None:
    """No one joins a plan from its wind-down's announcement (the staged rows, set-based): once
    it has passed, no row of the plan goes in, whatever joined_at it gives."""
    ending = winddown.wind_downs(session)
    now = datetime.now(UTC)
    for plan in sorted(plans & ending.keys()):
        lines = session.execute(
            text(
                "DELETE FROM member_staging WHERE plan = :plan "
                "AND (joined_at >= :announced OR :now >= :announced) RETURNING line"
            ),
            {"plan": plan, "announced": ending[plan].announce_at, "now": now},
        ).scalars()
        report.refused.extend((line, _winding_down(ending[plan])) for line in lines)


def _hold_for_payers(session: Session, chunk_pays: bool) -> None:
    """Set aside the rows whose payer is not a member yet (the payer may come later in the
    file). A row whose member already exists stays: it is refused as such, whoever the payer.

    With `chunk_pays`, a row whose payer is staged in the same chunk stays too, to go in
    with the payer in one insert: most families are enrolled together."""
    session.execute(
        text(
            "WITH held AS (DELETE FROM member_staging s WHERE s.payer_ref IS NOT NULL"
            f"  AND NOT ({PAID_IN_CHUNK if chunk_pays else 'false'})"
            f"  AND ({PAYER_ID.format(row='s')}) IS NULL"
            f"  AND NOT EXISTS ({IS_MEMBER.format(row='s')}) RETURNING s.*) "
            "INSERT INTO member_waiting SELECT * FROM held"
        ),
        {"plans": list(load_plans())},
    )


def _refuse_repeats_of_waiting(session: Session, report: ImportReport) -> None:
    """A member twice in the file: the first line is the enrolment, a later one is refused.
    Most repeats are skipped by the inserts, which go in line order; these are the repeats of
    a line that is still waiting for its payer."""
    for table in ("member_staging", "member_waiting"):
        repeats = session.execute(
            text(
                f"DELETE FROM {table} s WHERE EXISTS (SELECT 1 FROM member_waiting w "
                "WHERE w.plan = s.plan AND w.member_ref = s.member_ref AND w.line < s.line) "
                "RETURNING s.line, s.member_ref, s.plan"
            )
        )
        report.refused.extend((line, _already_member(ref, plan)) for line, ref, plan in repeats)


def _insert_staged(session: Session, report: ImportReport) -> None:
    """Enrol the staged rows in line order; one whose member exists by then (already, or from
    an earlier line) is skipped and reported.

    A chunk of new members only, the usual case, goes in with a plain INSERT: ON CONFLICT
    costs about 40% more per row. A member already there (or waited for, from a concurrent
    import) makes it fail in its savepoint, and the chunk goes in again, skipping those."""
    # In any order: one repeat fails it all, so the first line of a member never has to win
    # here (sorting a chunk by line costs an eighth of its insert).
    inserted = _plain_insert(session, CHUNK_INSERT, lambda result: result.rowcount)
    if inserted is not None:
        report.imported += inserted
        return
    # A payer in the chunk may be one of the rows skipped now: their families wait after all,
    # as for a payer in a later chunk, and are enrolled in rounds once the payer is a member.
    _hold_for_payers(session, chunk_pays=False)
    _refuse_repeats_of_waiting(session, report)
    staged = session.execute(text("SELECT count(*) FROM member_staging")).scalar_one()
    skipped = session.execute(
        text(
            f"WITH inserted AS ({STAGED_INSERT} ORDER BY s.line"
            "   ON CONFLICT (plan, member_ref) DO NOTHING RETURNING id) "
            # Against the chunk's own ids, never the whole member table.
            "SELECT s.line, s.member_ref, s.plan FROM member_staging s "
            "WHERE NOT EXISTS (SELECT 1 FROM inserted WHERE inserted.id = s.id)"
        ),
        {"plans": list(load_plans())},
    ).all()
    report.imported += staged - len(skipped)
    report.refused.extend((line, _already_member(ref, plan)) for line, ref, plan in skipped)


def _insert_families(session: Session) -> int:
    """One round: enrol the waiting rows whose payer is a member now; how many went in.

    Each payer is looked up once. As for the staged rows, a plain INSERT first, in a
    savepoint; if a member exists by now (another import enrolled it), the round again with
    ON CONFLICT: the row skipped goes back to waiting, and is reported at the end as already a
    member."""
    inserted = _plain_insert(
        session,
        f"{READY_FAMILIES}, inserted AS ({FAMILY_INSERT} RETURNING 1) "
        "SELECT count(*) FROM inserted",
        CursorResult.scalar_one,
    )
    if inserted is not None:
        return inserted
    return session.execute(
        text(
            f"{READY_FAMILIES}, inserted AS ({FAMILY_INSERT} ORDER BY r.line"
            "   ON CONFLICT (plan, member_ref) DO NOTHING RETURNING id), "
            f"skipped AS (INSERT INTO member_waiting SELECT {_prefixed('r', WAITING_COLUMNS)}"
            "  FROM ready r WHERE NOT EXISTS (SELECT 1 FROM inserted WHERE inserted.id = r.id)) "
            "SELECT count(*) FROM inserted"
        ),
        {"plans": list(load_plans())},
    ).scalar_one()


def _plain_insert(
    session: Session, statement: str, inserted: Callable[[CursorResult], int]
) -> int | None:
    """Run an insert of new members in a savepoint; how many went in (`inserted` reads it off
    the result). None, and nothing written, when a member was already there (a unique
    violation), for the caller to go the ON CONFLICT way; also None, at once, when the
    transaction has used up its savepoints (SAVEPOINTS).

    Only a savepoint that wrote counts: PostgreSQL gives a subtransaction an id at its first
    write and forgets the ids of those rolled back, so only these fill its cache."""
    written = session.info.get("import_savepoints", 0)
    if written >= SAVEPOINTS:
        return None
    try:
        with session.begin_nested():
            count = inserted(session.execute(text(statement), {"plans": list(load_plans())}))
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        return None
    session.info["import_savepoints"] = written + (count > 0)
    return count


def _refuse_waiting(session: Session, report: ImportReport) -> None:
    """The rows whose payer never became a member, or whose member another import enrolled."""
    left = session.execute(
        text(
            "SELECT w.line, w.member_ref, w.plan, w.payer_ref, "
            f"EXISTS ({IS_MEMBER.format(row='w')}) FROM member_waiting w"
        )
    )
    report.refused.extend(
        (line, _already_member(ref, plan) if taken else _payer_unknown(payer))
        for line, ref, plan, payer, taken in left
    )


def _prefixed(row: str, columns: str = MOVED_COLUMNS) -> str:
    return ", ".join(f"{row}.{column}" for column in columns.split(", "))


def _member_insert(row: str, payer_id: str, source: str) -> str:
    """INSERT into `member` of the rows `row` of `source` (drawn ids kept), paid for by
    `payer_id`: the one statement the staged rows, the chunk and the families differ in."""
    return (
        f"INSERT INTO member (id, {MOVED_COLUMNS}, payer_id) "
        f"SELECT {row}.id, {_prefixed(row)}, {payer_id} FROM {source}"
    )


WAITING_COLUMNS = ", ".join(["id", *STAGED])
# The waiting rows whose payer is a member now, taken out of waiting with their payer's id.
READY_FAMILIES = (
    f"WITH payers AS (SELECT w.id, ({PAYER_ID.format(row='w')}) AS payer_id "
    "FROM member_waiting w), "
    "ready AS (DELETE FROM member_waiting w USING payers p "
    "WHERE p.id = w.id AND p.payer_id IS NOT NULL RETURNING w.*, p.payer_id)"
)
FAMILY_INSERT = _member_insert("r", "r.payer_id", "ready r")
STAGED_INSERT = _member_insert(
    "s",
    f"CASE WHEN s.payer_ref IS NOT NULL THEN ({PAYER_ID.format(row='s')}) END",
    "member_staging s",
)
# The plain insert of a chunk: all its rows go in or none does, so a payer who is not a
# member yet (the hold kept such a row only if its payer is in the chunk) is the first staged
# row of that member_ref. The foreign key is checked at the end of the statement.
CHUNK_INSERT = _member_insert(
    "s",
    f"CASE WHEN s.payer_ref IS NOT NULL THEN COALESCE(({PAYER_ID.format(row='s')}), f.id) END",
    "member_staging s LEFT JOIN (SELECT f.member_ref, min(f.id) AS id "
    "  FROM member_staging f WHERE f.member_ref IN (SELECT payer_ref FROM member_staging)"
    "  GROUP BY f.member_ref) f ON f.member_ref = s.payer_ref",
)


def _in_background(
    items: Iterable[T], size: int, working: threading.Event, ahead: int = 64
) -> Iterator[list[T]]:
    """`items` in lists of `size`, made by a thread at most `ahead` lists in advance while
    `working` is set: this thread waits on PostgreSQL while that one works, and memory stays
    bounded. When this thread runs out of lists, that one works whatever `working` says."""
    lists: queue.Queue = queue.Queue(ahead)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            with suppress(queue.Full):
                lists.put(item, timeout=0.1)
                return

    def produce() -> None:
        try:
            batches = _batches(items, size)
            while not stop.is_set():
                if working.wait(timeout=0.1):
                    batch = next(batches, None)
                    put(batch)
                    if batch is None:
                        return
        except BaseException as error:  # handed over, raised in the consuming thread
            put(error)

    thread = threading.Thread(target=produce, name="import-validation", daemon=True)
    thread.start()
    try:
        while True:
            try:
                batch = lists.get_nowait()
            except queue.Empty:
                working.set()  # nothing to do here until that thread makes more
                batch = lists.get()
            if batch is None:
                break
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()
        thread.join()


class Refused(ValueError):
    """An applicant may not join; `code` names the rule, the message says it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = refusal_code(message)


def enrol(session: Session, applicant: Enrolment, consent: str, given_by: str) -> Member:
    """One member as the app enrols them: the import's rules, and the auto-debit consent (the
    text's version, at the moment of joining) stored with them. Raises Refused."""
    # The plan's lock first, as publishing takes it before it ages members out: a payer's rows
    # locked below, then the plan's lock, would deadlock with it.
    lock_plan(session, applicant.plan, shared=True)
    lock_member_ref(session, applicant.member_ref)
    if applicant.payer_ref is not None:
        _check_family(session, applicant.member_ref, applicant.payer_ref)
    report = ImportReport()
    try:
        import_batch(session, [(1, applicant)], report, now=applicant.joined_at)
    except IntegrityError as error:
        # The person's lock keeps two enrolments apart, but an import enrolling them at the same
        # moment does not take it: the later insert meets the first's key.
        if getattr(error.orig, "sqlstate", UNIQUE_VIOLATION) != UNIQUE_VIOLATION:
            raise
        raise Refused(_already_member(applicant.member_ref, applicant.plan)) from None
    if report.refused:
        raise Refused(report.refused[0][1])
    member = session.exec(
        select(Member).where(
            Member.plan == applicant.plan, Member.member_ref == applicant.member_ref
        )
    ).one()
    assert member.id is not None
    session.add(
        DebitConsent(
            member_id=member.id,
            version=consent,
            consented_at=applicant.joined_at,
            given_by=given_by,
        )
    )
    how = "enrolled by " + given_by if given_by != applicant.member_ref else "joined"
    session.add(
        MemberEvent(
            member_id=member.id,
            at=applicant.joined_at,
            kind="joined",
            reason=f"{how} in the app; auto-debit consent {consent}",
        )
    )
    return member


def _check_family(session: Session, member_ref: str, payer_ref: str) -> None:
    """A member enrolling family pays for themselves (the one who pays for a dependant
    enrols that family), and the family member is new, or already this payer's dependant in
    another plan: nobody makes someone else's membership theirs to pay for and to read.

    The payer's rows stay locked to the end, so the payer cannot leave while their
    dependant joins (an exit locks its row before counting the family)."""
    if member_ref == payer_ref:
        raise Refused(f"{member_ref} cannot be their own dependant")
    payer = session.exec(
        for_update(
            select(Member).where(
                col(Member.plan).in_(list(load_plans())),
                Member.member_ref == payer_ref,
                col(Member.exited_at).is_(None),
            )
        )
    ).all()
    if not payer:
        raise Refused(_payer_unknown(payer_ref))
    if any(row.payer_id is not None for row in payer):
        raise Refused(f"{payer_ref} is a dependant: the member who pays for them enrols family")
    paid_by = session.exec(
        select(Member.payer_id).where(
            col(Member.plan).in_(list(load_plans())), Member.member_ref == member_ref
        )
    ).all()
    if any(payer_id not in {row.id for row in payer} for payer_id in paid_by):
        raise Refused(f"{member_ref} belongs to another member, who alone may enrol them")


def exit_member(session: Session, plan: str, member_ref: str, at: datetime) -> Member:
    """Voluntary exit, effective at 00:00 the next day: no refund, and a member who leaves on
    an announcement day (or later) still shares in that cycle."""
    lock_plan(session, plan, shared=True)
    effective = start_of_day(local_date(at) + timedelta(days=1))
    member = session.exec(
        for_update(select(Member).where(Member.plan == plan, Member.member_ref == member_ref))
    ).first()
    if member is None:
        raise LookupError(f"{member_ref} is not a member of {plan}")
    dependants = session.exec(
        select(func.count()).where(Member.payer_id == member.id, col(Member.exited_at).is_(None))
    ).one()
    if refusal := exit_refusal(member.exited_at, dependants):
        raise ValueError(f"{member_ref} cannot leave {plan}: {refusal}")
    published = published_cutoffs(session).get(plan)
    if published is not None and effective <= published:
        # Who shares in a published cycle is fixed; an exit cannot take effect before its cut-off.
        raise ValueError(
            f"{member_ref} cannot leave {plan} before {published.isoformat()}, "
            "the cut-off of a published cycle"
        )
    member.exited_at, member.exit_reason = effective, ExitReason.VOLUNTARY
    ending = winddown.of_plan(session, plan)
    if ending is not None and effective > ending.end_at:
        # No membership outlasts its plan; asked after the end, the plan ended it already.
        member.exited_at = ending.end_at
        if at >= ending.end_at:
            member.exit_reason = ExitReason.PLAN_ENDED
    session.add(member)
    return member


def age_out(session: Session, plan_code: str, cutoff: datetime) -> int:
    """Record the exit of members who reached the plan's exit age by `cutoff`.

    The exit is stamped at the cut-off that noticed it, so the member does not share that cycle.
    """
    plan = get_plan(plan_code)
    last_birth_date = add_years(local_date(cutoff), -plan.exit_age_years)
    result = session.execute(
        update(Member)
        .where(
            Member.plan == plan_code,
            col(Member.exited_at).is_(None),
            col(Member.birth_date) <= last_birth_date,
        )
        .values(exited_at=cutoff, exit_reason=ExitReason.AGE_LIMIT)
    )
    return result.rowcount
