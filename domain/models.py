"""The tables: members, claims and their events, sharing cycles, charges and the ledger.

Money columns are BigInteger fen; timestamps are timezone-aware UTC. Personal data (name, birth
date, diagnosis) lives only here, in its own columns, and never travels in a task message.
"""

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on PostgreSQL and on SQLite (which keeps
    no offset: it stores naive UTC, so text comparison stays chronological)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit ids on PostgreSQL; SQLite only auto-numbers a column declared INTEGER PRIMARY KEY.
ID = BigInteger().with_variant(Integer(), "sqlite")


def money(nullable: bool = False):
    return Field(default=None if nullable else 0, sa_type=BigInteger, nullable=nullable)


def moment(nullable: bool = False, index: bool = False):
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Member(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("plan", "member_ref"),
        # A payer's family: exits (family first) and the member's card look them up.
        Index("ix_member_payer_id", "payer_id", postgresql_where=text("payer_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    member_ref: str = Field(max_length=64)
    plan: str = Field(max_length=32)
    name: str | None = Field(default=None, max_length=100)
    birth_date: date
    sex: str = Field(max_length=1)
    province: str = Field(max_length=32)
    joined_at: datetime = moment()
    exited_at: datetime | None = moment(nullable=True)
    exit_reason: str | None = Field(default=None, max_length=32)
    # A member exists only once their health declaration and credit assessment passed; a
    # refused applicant is reported by the import with the reason and never stored.
    payer_id: int | None = Field(default=None, foreign_key="member.id", sa_type=BigInteger)
    # Passed the juror certification (赔审员考试): may vote on dispute juries.
    jury_certified: bool = False


PAYABLE_STATES = "state IN ('approved', 'scheduled', 'announced', 'objected', 'settled', 'paid')"


class Claim(SQLModel, table=True):
    __table_args__ = (
        Index("ix_claim_state_updated", "state", "updated_at"),
        # The fraud flags' counts: a hospital's claims, a diagnosis's, all claims, by time.
        Index("ix_claim_hospital_received", "hospital", "received_at"),
        Index("ix_claim_icd10_received", "icd10", "received_at"),
        Index("ix_claim_received", "received_at"),
        # The last guard of "one payout per member per plan", whatever the review concluded.
        Index(
            "uq_claim_one_payable_per_member",
            "plan",
            "member_id",
            unique=True,
            postgresql_where=text(PAYABLE_STATES),
            sqlite_where=text(PAYABLE_STATES),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    submission_id: str = Field(max_length=128, unique=True)
    # The submission exactly as received, so a malformed one is kept, never lost.
    raw: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = moment()
    member_id: int | None = Field(
        default=None, foreign_key="member.id", index=True, sa_type=BigInteger
    )
    plan: str | None = Field(default=None, max_length=32)
    icd10: str | None = Field(default=None, max_length=16)
    illness_code: str | None = Field(default=None, max_length=64)
    diagnosed_on: date | None = None
    hospital: str | None = Field(default=None, max_length=200)
    accident: bool | None = None
    state: str = Field(max_length=24)
    reason_code: str | None = Field(default=None, max_length=40)
    reason_detail: str | None = Field(default=None, max_length=500)
    amount_fen: int | None = money(nullable=True)
    decided_at: datetime | None = moment(nullable=True)
    cycle_id: int | None = Field(default=None, foreign_key="sharingcycle.id", index=True)
    # Runs of the current step; a task that keeps dying stops after a few and asks for a person.
    attempts: int = 0
    updated_at: datetime = moment()


class ClaimEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    claim_id: int = Field(foreign_key="claim.id", index=True, sa_type=BigInteger)
    at: datetime = moment()
    actor: str = Field(max_length=64)
    from_state: str | None = Field(default=None, max_length=24)
    to_state: str = Field(max_length=24)
    reason: str | None = Field(default=None, max_length=500)


class CycleStatus:
    OPEN = "open"  # cases are being decided
    ANNOUNCED = "announced"  # the list and the sharing members are fixed; objections open
    CLOSING = "closing"  # figures frozen, charges being written chunk by chunk
    CLOSED = "closed"  # every chunk written and the books entered


class SharingCycle(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("plan", "announce_on"),)

    id: int | None = Field(default=None, primary_key=True)
    plan: str = Field(max_length=32)
    announce_on: date
    charge_on: date
    status: str = Field(max_length=16)
    cutoff_at: datetime = moment()
    announced_at: datetime | None = moment(nullable=True)
    closing_at: datetime | None = moment(nullable=True)
    closed_at: datetime | None = moment(nullable=True)
    sharing_members: int = Field(default=0, sa_type=BigInteger)
    cases: int = 0
    aid_fen: int = money()
    fee_fen: int = money()
    surplus_in_fen: int = money()
    surplus_out_fen: int = money()
    share_fen: int = money()
    cap_subsidy_fen: int = money()
    annual_cap_subsidy_fen: int = money()
    subsidy_fen: int = money()
    charged_fen: int = money()
    # What the platform paid in the members' place (a plan winding down; part of subsidy_fen).
    platform_share_fen: int = money()
    # Whether some member could reach the annual cap, so charging must read each one's year.
    annual_cap_binds: bool = False
    first_member_id: int = Field(default=0, sa_type=BigInteger)
    last_member_id: int = Field(default=0, sa_type=BigInteger)
    chunk_size: int = Field(default=1, sa_type=BigInteger)
    chunks: int = 0
    # Collection: rounds of debits (1 on the charge day, then retries) until the window closes.
    collection_round: int = 0
    collection_round_on: date | None = None
    retry_until: datetime | None = moment(nullable=True)
    debit_batch_size: int = Field(default=1, sa_type=BigInteger)
    debit_batches: int = 0
    first_account_id: int = Field(default=0, sa_type=BigInteger)
    # Set once the window has closed and members unpaid twice in a row were removed.
    arrears_settled_at: datetime | None = moment(nullable=True)
    # PostgreSQL: the cycle's charge partition was detached (after a clean audit and full
    # collection) to be dumped and dropped; the audit no longer reads its rows.
    charges_archived_at: datetime | None = moment(nullable=True)
    # The proofs (domain.sumtree): the roots of the Merkle sum trees over the cycle's charges
    # and over its cases, and the cycle's entry in the log of roots; set when it closes.
    charges_root: bytes | None = Field(default=None, sa_type=LargeBinary)
    cases_root: bytes | None = Field(default=None, sa_type=LargeBinary)
    log_index: int | None = Field(default=None, sa_type=BigInteger)


class ChargeChunk(SQLModel, table=True):
    """A chunk of a cycle's charges that has been written; its row is the chunk's 'done' mark."""

    cycle_id: int = Field(foreign_key="sharingcycle.id", primary_key=True)
    chunk_no: int = Field(primary_key=True)
    rows: int = Field(default=0, sa_type=BigInteger)
    amount_fen: int = money()
    subsidy_fen: int = money()
    done_at: datetime = moment()
    # The hash of the chunk's subtree of the cycle's sum tree (its sums: rows, amount_fen).
    root: bytes | None = Field(default=None, sa_type=LargeBinary)


class ProofBucket(SQLModel, table=True):
    """The root of one bucket of a chunk's subtree: the members of 1,024 consecutive ids
    (sumtree.BUCKET_IDS). A member's proof recomputes only the leaves of their bucket; these
    rows are the rest."""

    cycle_id: int = Field(foreign_key="sharingcycle.id", primary_key=True)
    chunk_no: int = Field(primary_key=True)
    bucket: int = Field(primary_key=True, sa_type=BigInteger)
    hash: bytes = Field(sa_type=LargeBinary)
    amount_fen: int = money()
    members: int = Field(default=0, sa_type=BigInteger)


class LogEntry(SQLModel, table=True):
    """One closed cycle's roots in the append-only log (RFC 9162's shape); `entry` is the
    canonical JSON that is hashed, kept byte for byte."""

    leaf_index: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    cycle_id: int = Field(foreign_key="sharingcycle.id", unique=True)
    entry: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = moment()


class LogHead(SQLModel, table=True):
    """A signed tree head: the log's root at a size, signed with the log's Ed25519 key."""

    size: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    timestamp_ms: int = Field(sa_type=BigInteger)
    root: bytes = Field(sa_type=LargeBinary)
    signature: bytes = Field(sa_type=LargeBinary)
    public_key: bytes = Field(sa_type=LargeBinary)


class DebitStatus:
    DUE = "due"  # charged, not yet asked of the payment provider
    SENDING = "sending"  # in a debit request whose answer is not recorded yet
    COLLECTED = "collected"
    FAILED = "failed"  # the last attempt failed; retried until the window closes, then arrears


class Charge(SQLModel, table=True):
    """One member's share in one cycle; the key (cycle, member) is the last guard against twice.

    On PostgreSQL the table is partitioned by cycle, one partition per cycle made with the
    cycle's row (services.store.add_charge_partition): a close writes into a table of its own,
    and an old cycle is detached and archived without touching the live one.
    """

    __table_args__ = (
        Index("ix_charge_cycle_account", "cycle_id", "account_id"),
        {"postgresql_partition_by": "LIST (cycle_id)"},
    )

    # No foreign key: checking one per row doubled the time of a chunk's INSERT (EXPLAIN
    # ANALYZE: 364 of 790 ms for 100,000 rows), and on PostgreSQL a row can only land in the
    # partition made for an existing cycle anyway.
    cycle_id: int = Field(primary_key=True)
    member_id: int = Field(primary_key=True, sa_type=ID)
    # Who pays it: the member's payer, or the member.
    account_id: int = Field(sa_type=BigInteger)
    amount_fen: int = money()
    # What the annual cap cut off this member's share; the platform pays it.
    subsidy_fen: int = money()
    # Collection. Server defaults, because charges are written by INSERT ... SELECT.
    debit_status: str = Field(
        default=DebitStatus.DUE, max_length=12, sa_column_kwargs={"server_default": "due"}
    )
    # The attempt number goes into the idempotency key, and the key is stored while the debit
    # is in flight: whoever re-sends it (a redelivered batch, a later round, a settlement)
    # sends the same key, and its answer is recorded only against that key.
    debit_attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    debit_key: str | None = Field(default=None, max_length=80)
    collected_fen: int = Field(
        default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    debited_at: datetime | None = moment(nullable=True)


class PayoutStatus:
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"  # the provider refused it; a person must look


class Payout(SQLModel, table=True):
    """Money to a member: a claim's aid, or the refund of shares after a waiting-period illness.

    The key ("aid:<claim>", "refund:<plan>:<member>") is the provider's idempotency key, so a
    payout is made once whatever is redelivered.
    """

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    key: str = Field(max_length=80, unique=True)
    purpose: str = Field(max_length=8)  # aid | refund
    plan: str = Field(max_length=32)
    member_id: int = Field(foreign_key="member.id", sa_type=BigInteger)
    claim_id: int | None = Field(default=None, foreign_key="claim.id", sa_type=BigInteger)
    account: str = Field(max_length=64)
    amount_fen: int = money()
    status: str = Field(default=PayoutStatus.PENDING, max_length=8, index=True)
    attempts: int = 0
    provider_ref: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = moment()
    paid_at: datetime | None = moment(nullable=True)


class Objection(SQLModel, table=True):
    """我有异议: a member objects to an announced case; re-review upholds or dismisses it."""

    __table_args__ = (UniqueConstraint("claim_id", "member_id"),)  # once per member per case

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    claim_id: int = Field(foreign_key="claim.id", index=True, sa_type=BigInteger)
    member_id: int = Field(foreign_key="member.id", sa_type=BigInteger)
    cycle_id: int = Field(foreign_key="sharingcycle.id")
    reason: str = Field(sa_column=Column(Text, nullable=False))
    evidence: str | None = Field(default=None, max_length=500)
    filed_at: datetime = moment()
    status: str = Field(default="open", max_length=10)  # open | upheld | dismissed
    decided_at: datetime | None = moment(nullable=True)
    decided_by: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=500)
    # A re-review against an investigation's findings rests on two reviewers: the first's.
    first_by: str | None = Field(default=None, max_length=64)
    first_uphold: bool | None = None


class JuryCase(SQLModel, table=True):
    """赔审团: members judge a rejected claim; the tally and the outcome are kept."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    claim_id: int = Field(foreign_key="claim.id", unique=True, sa_type=BigInteger)
    requested_at: datetime = moment()
    closes_at: datetime = moment()
    min_votes: int
    status: str = Field(default="open", max_length=8)  # open | closed
    support: int = 0
    oppose: int = 0
    valid: bool | None = None
    approved: bool | None = None
    closed_at: datetime | None = moment(nullable=True)


class JuryVote(SQLModel, table=True):
    """One juror, one vote: the key (case, member) keeps a second vote out."""

    case_id: int = Field(foreign_key="jurycase.id", primary_key=True, sa_type=ID)
    member_id: int = Field(foreign_key="member.id", primary_key=True, sa_type=ID)
    support: bool
    cast_at: datetime = moment()


class MemberEvent(SQLModel, table=True):
    """Something that happened to a membership and why (removal for non-payment, arrears paid)."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    member_id: int = Field(foreign_key="member.id", index=True, sa_type=BigInteger)
    at: datetime = moment()
    kind: str = Field(max_length=32)
    reason: str = Field(max_length=500)


class LedgerEntry(SQLModel, table=True):
    """A double-entry movement: `amount_fen` leaves `credit` and arrives in `debit`."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    key: str = Field(max_length=128, unique=True)
    at: datetime = moment()
    debit: str = Field(max_length=64, index=True)
    credit: str = Field(max_length=64, index=True)
    amount_fen: int = money()
    cycle_id: int | None = Field(default=None, foreign_key="sharingcycle.id", index=True)
    claim_id: int | None = Field(default=None, foreign_key="claim.id", sa_type=BigInteger)
    memo: str = Field(default="", max_length=200)


class ApiRequest(SQLModel, table=True):
    """A member's write through the API under their Idempotency-Key: the same key and body get
    the same answer; the same key with another body is refused."""

    member_ref: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=128)
    body_sha256: str = Field(max_length=64)
    submission_id: str = Field(max_length=128)
    created_at: datetime = moment()


class DebitConsent(SQLModel, table=True):
    """A member's auto-debit consent as given through the app: the text's version and the
    moment; for a dependant, the payer's consent to pay their shares. No consent, no member."""

    member_id: int = Field(foreign_key="member.id", primary_key=True, sa_type=ID)
    version: str = Field(max_length=32)
    consented_at: datetime = moment()
    given_by: str = Field(max_length=64)  # the member_ref of the account that pays


class PlanWindDown(SQLModel, table=True):
    """A plan's wind-down (domain.winddown): when it is announced and ends, and the stage it has
    reached; each stage reached is a PlanEvent."""

    plan: str = Field(primary_key=True, max_length=32)
    announce_at: datetime = moment()
    end_at: datetime = moment()
    refund_all_shares: bool = False
    stage: str = Field(max_length=16)
    scheduled_at: datetime = moment()
    scheduled_by: str = Field(max_length=64)


class ClaimFlag(SQLModel, table=True):
    """A fraud flag a claim raised (domain.flags): it sent the claim to a person, never rejected
    it; the reviewer's final decision confirms (a rejection) or clears (an approval) it."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    claim_id: int = Field(foreign_key="claim.id", index=True, sa_type=BigInteger)
    rule: str = Field(max_length=16)
    detail: str = Field(max_length=200)
    raised_at: datetime = moment()
    outcome: str | None = Field(default=None, max_length=16)  # confirmed | cleared
    settled_by: str | None = Field(default=None, max_length=64)


class ReviewTask(SQLModel, table=True):
    """A claim waiting for a person (domain.review): its deadlines, who has it, and the first
    reviewer's decision while it waits for the second. Gone once the claim is decided; each step
    is also in the claim's events, with the reviewer."""

    __table_args__ = (Index("ix_reviewtask_plan_due", "plan", "due_at"),)

    claim_id: int = Field(foreign_key="claim.id", primary_key=True, sa_type=BigInteger)
    plan: str = Field(max_length=32)
    stage: str = Field(max_length=8)  # first | second
    opened_at: datetime = moment()
    escalate_at: datetime = moment()
    due_at: datetime = moment()
    escalated_at: datetime | None = moment(nullable=True)
    assigned_to: str | None = Field(default=None, max_length=64)
    assigned_at: datetime | None = moment(nullable=True)
    first_reviewer: str | None = Field(default=None, max_length=64)
    first_approve: bool | None = None
    first_reason: str | None = Field(default=None, max_length=40)
    first_note: str | None = Field(default=None, max_length=500)


class Investigation(SQLModel, table=True):
    """A case opened for a flagged or disputed claim (domain.investigations): who works it (our
    staff, or an outside firm's investigator), when its findings are due, and what they were.
    At most one case of a claim is open at a time."""

    __table_args__ = (
        Index(
            "ux_investigation_open_claim",
            "claim_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    claim_id: int = Field(foreign_key="claim.id", index=True, sa_type=BigInteger)
    plan: str = Field(max_length=32)
    cause: str = Field(max_length=16)  # flagged | disputed | reviewer
    why: str = Field(max_length=500)
    opened_by: str = Field(max_length=64)
    opened_at: datetime = moment()
    due_at: datetime = moment()
    investigator: str | None = Field(default=None, max_length=64)
    firm: str | None = Field(default=None, max_length=100)  # None: our own staff
    assigned_at: datetime | None = moment(nullable=True)
    closed_at: datetime | None = moment(nullable=True)
    finding: str | None = Field(default=None, max_length=16)  # supports|contradicts|inconclusive
    finding_reason: str | None = Field(default=None, max_length=40)  # a Reason, if contradicts
    summary: str | None = Field(default=None, max_length=2000)


class InvestigationNote(SQLModel, table=True):
    """A note on a case, by whoever worked it; kept in the order written."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    investigation_id: int = Field(foreign_key="investigation.id", index=True, sa_type=BigInteger)
    author: str = Field(max_length=64)
    at: datetime = moment()
    text: str = Field(sa_column=Column(Text, nullable=False))


class EvidenceFile(SQLModel, table=True):
    """A file an investigator added to a case. The bytes live in the evidence store under their
    SHA-256 (never in a row, never in a message); the row says what it is and who added it."""

    __table_args__ = (UniqueConstraint("investigation_id", "sha256"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    investigation_id: int = Field(foreign_key="investigation.id", index=True, sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    size_bytes: int = Field(sa_type=BigInteger)
    media_type: str = Field(max_length=64)
    label: str = Field(max_length=200)
    added_by: str = Field(max_length=64)
    added_at: datetime = moment()


class PlanEvent(SQLModel, table=True):
    """Something that happened to a plan as a whole: a wind-down scheduled, a stage reached."""

    id: int | None = Field(default=None, primary_key=True, sa_type=ID)
    plan: str = Field(max_length=32, index=True)
    at: datetime = moment()
    kind: str = Field(max_length=32)
    detail: str = Field(max_length=500)
