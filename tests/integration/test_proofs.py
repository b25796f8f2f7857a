"""Every member of a closed cycle can check their charge: proofs built in the close hold for each
of them, the audit recomputes every root from the rows, and tampering with the rows, the stored
roots or the log is caught by the audit and by the member's own check."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlmodel import col, select

from broker.database import engine
from broker.proofkeys import proof_keys
from domain import proofs, translog
from domain.db import transaction
from domain.models import Charge, LogHead, Member, ProofBucket, SharingCycle
from domain.services import audit as audit_service
from domain.services import claims as claim_service
from domain.services import cycles as cycle_service
from domain.services import proofs as proof_service
from tests.integration.api_support import serving, tokens  # noqa: F401
from tests.integration.scenario import (
    CLOSE_AT,
    CRITICAL,
    NOW_UTC,
    PUBLISH_AT,
    enrol,
    member,
    review_by_records,
    submission,
)

MEMBERS = 230  # chunks of 50 (the stacks' chunk size): five chunks, the last one short
PAYER, DEPENDANTS = "C0100", ("D0001", "D0002")


def close_a_cycle(before_finalise=None) -> SharingCycle:
    """230 members with gaps in their ids (members of another plan in between), a payer with
    two dependants, two cases; published and closed chunk by chunk as the workers do."""
    rows = []
    for n in range(MEMBERS):
        rows.append(member(f"C{n:04d}", CRITICAL, 30 + n % 25))
        if n % 7 == 0:
            rows.append(member(f"S{n:04d}", "senior-cancer", 62))
    rows += [member(ref, CRITICAL, 8, payer=PAYER) for ref in DEPENDANTS]
    enrol(rows)
    for sid, ref, icd10 in (("p-1", "C0005", "C73"), ("p-2", "C0015", "I21.0")):
        with transaction(engine()) as session:
            claim_id, _ = claim_service.record_submission(
                session, submission(sid, ref, icd10), NOW_UTC
            )
        for step in (claim_service.accept, review_by_records, claim_service.schedule):
            with transaction(engine()) as session:
                step(session, claim_id, NOW_UTC)
    with transaction(engine()) as session:
        cycle_service.publish(session, CRITICAL, PUBLISH_AT)
        cycle = cycle_service.begin_close(session, CRITICAL, CLOSE_AT, chunk_size=50)
    for chunk_no in range(cycle.chunks):
        with transaction(engine()) as session:
            cycle_service.charge_chunk(session, cycle.id, chunk_no, NOW_UTC, proof_keys())
    if before_finalise:
        before_finalise(cycle.id)
    with transaction(engine()) as session:
        return cycle_service.finalise(session, cycle.id, NOW_UTC, proof_keys())


def proof_of(cycle_id: int, member_ref: str) -> dict:
    with transaction(engine()) as session:
        cycle = session.get(SharingCycle, cycle_id)
        row = session.exec(
            select(Member).where(Member.plan == CRITICAL, Member.member_ref == member_ref)
        ).one()
        return proof_service.member_proof(session, cycle, row, proof_keys().secret)


def trusted() -> bytes:
    return proof_keys().signer.public_key().public_bytes_raw()


def audit_problems() -> list[str]:
    with transaction(engine()) as session:
        return audit_service.audit(session, keys=proof_keys()).problems


def failed_step(document: dict, **given) -> str | None:
    checks = proofs.verify(document, trusted_key=trusted(), **given)
    return next((c.name for c in checks if not c.ok), None)


def test_every_member_of_a_closed_cycle_can_verify_their_charge(stack):
    cycle = close_a_cycle()
    assert cycle.chunks == 6 and cycle.sharing_members == MEMBERS + 2
    with transaction(engine()) as session:
        charged = session.exec(
            select(Member.member_ref)
            .join(Charge, col(Charge.member_id) == Member.id)
            .where(Charge.cycle_id == cycle.id)
        ).all()
    assert len(charged) == cycle.sharing_members and set(DEPENDANTS) <= set(charged)
    for ref in charged:
        document = proof_of(cycle.id, ref)
        checks = proofs.verify(document, trusted_key=trusted(), expected_member=ref)
        assert proofs.holds(checks), (ref, checks)
    entry = json.loads(document["log"]["entry"])
    assert (entry["charged_fen"], entry["members"]) == (cycle.charged_fen, cycle.sharing_members)
    assert (entry["aid_fen"], entry["cases"]) == (cycle.aid_fen, cycle.cases) == (40_000_000, 2)
    assert audit_problems() == []


def test_a_fen_changed_after_the_close_fails_the_audit_and_the_members_check(stack):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        target = session.exec(select(Member).where(Member.member_ref == "C0042")).one()
        charge = session.get(Charge, (cycle.id, target.id))
        charge.amount_fen -= 1  # and the books moved with it, so that only the proofs notice
        session.add(charge)
        cycle = session.get(SharingCycle, cycle.id)
    assert any("do not make the roots stored at the close" in p for p in audit_problems())
    assert failed_step(proof_of(cycle.id, "C0042")) == "path to the root"
    assert proofs.holds(proofs.verify(proof_of(cycle.id, "C0099"), trusted_key=trusted()))


@pytest.mark.parametrize("change", ["dropped", "added"])
def test_a_member_dropped_or_added_after_the_close_fails_the_audit(stack, change):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        if change == "dropped":
            victim = session.exec(select(Member).where(Member.member_ref == "C0077")).one()
            session.delete(session.get(Charge, (cycle.id, victim.id)))
        else:  # a member of the other plan between two charged ones, charged too
            other = session.exec(select(Member).where(Member.member_ref == "S0070")).one()
            session.add(
                Charge(cycle_id=cycle.id, member_id=other.id, account_id=other.id, amount_fen=0)
            )
    problems = audit_problems()
    assert any("do not make the roots stored at the close" in p for p in problems), problems
    if change == "dropped":
        with pytest.raises(proof_service.NoProof, match="was not charged"):
            proof_of(cycle.id, "C0077")


def test_a_stored_bucket_root_doubling_a_leaf_fails_the_audit(stack):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        bucket = session.exec(select(ProofBucket).where(ProofBucket.cycle_id == cycle.id)).first()
        bucket.members += 1
        bucket.amount_fen += cycle.share_fen
        session.add(bucket)
    assert any("do not make the roots stored" in p for p in audit_problems())


def test_a_root_rewritten_in_the_log_is_caught_by_the_audit_and_by_a_kept_head(stack):
    cycle = close_a_cycle()
    kept = proof_of(cycle.id, "C0010")  # a member keeps the proof, with its signed head
    rewritten = kept["log"]["entry"].replace(
        f'"charged_fen":{cycle.charged_fen}', '"charged_fen":1'
    )
    assert rewritten != kept["log"]["entry"]
    with transaction(engine()) as session:
        session.execute(text("UPDATE logentry SET entry = :e"), {"e": rewritten})
        # The operator re-signs the head over the rewritten log with the real key.
        leaves = proof_service.log_leaves(session)
        head = session.get(LogHead, 1)
        fresh = translog.TreeHead(1, head.timestamp_ms + 1, translog.root(leaves))
        head.root, head.timestamp_ms = fresh.root, fresh.timestamp_ms
        head.signature = translog.sign_head(fresh, proof_keys().signer)
        session.add(head)
    problems = audit_problems()
    assert any("its entry in the log is not its roots and figures" in p for p in problems)
    published = proof_of(cycle.id, "C0010")["log"]["head"]
    assert failed_step(kept, published_head=published) == "published head"


def test_a_head_signed_with_another_key_is_caught(stack):
    cycle = close_a_cycle()
    other = Ed25519PrivateKey.generate()
    with transaction(engine()) as session:
        head = session.get(LogHead, 1)
        tree_head = translog.TreeHead(head.size, head.timestamp_ms, head.root)
        head.signature = translog.sign_head(tree_head, other)
        head.public_key = other.public_key().public_bytes_raw()
        session.add(head)
    assert any("signed with another key" in p for p in audit_problems())
    assert failed_step(proof_of(cycle.id, "C0010")) == "signed head"


def test_the_api_gives_members_their_proofs_and_anyone_the_roots_and_heads(stack, tokens):  # noqa: F811
    cycle = close_a_cycle()
    with serving() as api:
        mine = api.get(f"/v1/me/charges/{cycle.id}/proof", headers=tokens("C0010"))
        assert mine.status_code == 200, mine.text
        assert proofs.holds(
            proofs.verify(mine.json(), trusted_key=trusted(), expected_member="C0010")
        )
        family = api.get(
            f"/v1/me/charges/{cycle.id}/proof",
            params={"member": DEPENDANTS[0]},
            headers=tokens(PAYER),
        )
        assert family.status_code == 200 and family.json()["leaf"]["member_ref"] == DEPENDANTS[0]
        others = api.get(
            f"/v1/me/charges/{cycle.id}/proof", params={"member": "C0011"}, headers=tokens("C0010")
        )
        assert others.status_code == 404
        assert api.get(f"/v1/me/charges/{cycle.id}/proof").status_code == 401
        assert api.get("/v1/me/charges/999/proof", headers=tokens("C0010")).status_code == 404
        roots = api.get(f"/v1/plans/{CRITICAL}/cycles/{cycle.id}/root")
        assert roots.status_code == 200
        body = roots.json()
        assert body["charges_root"]["amount_fen"] == cycle.charged_fen
        assert body["charges_root"]["count"] == cycle.sharing_members
        assert [c["case_ref"] for c in body["cases"]] == ["p-1", "p-2"]
        head = api.get("/v1/log/heads/latest").json()
        assert head["size"] == 1 and head["public_key"] == trusted().hex()
        assert head == mine.json()["log"]["head"]
        assert api.get("/v1/log/consistency", params={"from": 1, "to": 1}).json()["proof"] == []
        assert api.get("/v1/log/consistency", params={"from": 1, "to": 2}).status_code == 404
        assert api.get("/v1/log/consistency", params={"from": 2, "to": 1}).status_code == 422


def test_huzhu_verify_says_whether_a_downloaded_proof_holds(sqlite_stack, tmp_path):
    cycle = close_a_cycle()
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(proof_of(cycle.id, "C0020")))
    head = tmp_path / "head.json"
    head.write_text(json.dumps(json.loads(good.read_text())["log"]["head"]))
    held = verify(sqlite_stack, good, "--head", str(head), "--member", "C0020")
    assert held.returncode == 0 and "the proof holds" in held.stdout, held.stdout + held.stderr
    tampered = json.loads(good.read_text())
    tampered["leaf"]["amount_fen"] -= 1
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    refused = verify(sqlite_stack, bad, "--json")
    assert refused.returncode == 1
    result = json.loads(refused.stdout)
    assert result["holds"] is False
    assert [c["name"] for c in result["checks"] if not c["ok"]] == ["path to the root"]
    wrong_key = verify(sqlite_stack, good, "--key", "00" * 32)
    assert wrong_key.returncode == 1 and "not yours" in wrong_key.stdout
    missing = verify(sqlite_stack, tmp_path / "nothing.json")
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def verify(stack, path, *options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "verify", str(path), *options],
        env=stack.env | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_archived_flag_on_a_cycle_whose_rows_are_still_there_does_not_stop_the_audit(stack):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        marked = session.get(SharingCycle, cycle.id)
        marked.charges_archived_at = NOW_UTC  # on SQLite nothing was detached: the rows stay
        session.add(marked)
        target = session.exec(select(Member).where(Member.member_ref == "C0042")).one()
        other = session.exec(select(Member).where(Member.member_ref == "C0043")).one()
        refs = target.member_ref, other.member_ref
        target.member_ref, other.member_ref = "swap", refs[0]
        session.add_all([target, other])
        session.flush()
        target.member_ref = refs[1]
        session.add(target)
    assert any("do not make the roots stored" in p for p in audit_problems())


def test_chunks_hidden_from_the_audit_are_found(stack):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        fewer = session.get(SharingCycle, cycle.id)
        fewer.chunks -= 1
        session.add(fewer)
        session.execute(
            text("DELETE FROM proofbucket WHERE cycle_id = :c AND chunk_no = :n"),
            {"c": cycle.id, "n": fewer.chunks},
        )
    problems = audit_problems()
    assert any(f"it has {cycle.chunks - 1} chunks" in p for p in problems), problems
    assert any(f"rows of chunks [{cycle.chunks - 1}]" in p for p in problems), problems


def close_two_cycles() -> SharingCycle:
    """The first cycle, then the other plan's (no cases, nothing charged): a log of two."""
    return close_two_cycles_after(close_a_cycle())


@pytest.mark.parametrize("change", ["head deleted", "time reversed", "entry of no cycle"])
def test_the_log_keeps_a_signed_head_per_size_in_time_and_entries_of_closed_cycles(stack, change):
    second = close_two_cycles()
    assert second.log_index == 1 and audit_problems() == []
    with transaction(engine()) as session:
        if change == "head deleted":
            session.delete(session.get(LogHead, 1))
        elif change == "time reversed":
            head = session.get(LogHead, 2)
            earlier = translog.TreeHead(2, session.get(LogHead, 1).timestamp_ms - 1, head.root)
            head.timestamp_ms, head.signature = (
                earlier.timestamp_ms,
                translog.sign_head(earlier, proof_keys().signer),
            )
            session.add(head)
        else:  # the second cycle's entry is moved to a cycle that never closed
            session.execute(
                text("UPDATE sharingcycle SET log_index = NULL WHERE id = :c"), {"c": second.id}
            )
    problems = audit_problems()
    expected = {
        "head deleted": "one signed head per size",
        "time reversed": "go back in time",
        "entry of no cycle": "is not the entry of a closed cycle",
    }[change]
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "lost, said", [("loghead", "no signed head"), ("logentry", "missing from the log")]
)
def test_without_its_log_entry_or_a_head_over_it_a_proof_is_refused_not_a_server_error(
    stack,
    tokens,  # noqa: F811
    lost,
    said,
):
    cycle = close_a_cycle()
    with transaction(engine()) as session:
        session.execute(text(f"DELETE FROM {lost}"))
    with serving() as api:
        answer = api.get(f"/v1/me/charges/{cycle.id}/proof", headers=tokens("C0010"))
        assert answer.status_code == 404 and said in answer.json()["detail"]
        assert api.get(f"/v1/plans/{CRITICAL}/cycles/{cycle.id}/root").status_code == 404


def test_a_cycle_closed_before_proofs_existed_is_listed_for_a_person_not_a_problem(stack):
    cycle = close_a_cycle()
    with transaction(engine()) as session:  # as before migration 0006: no proofs, no log
        for table in ("proofbucket", "loghead", "logentry"):
            session.execute(text(f"DELETE FROM {table}"))
        session.execute(
            text(
                "UPDATE sharingcycle SET charges_root = NULL, cases_root = NULL, "
                "log_index = NULL WHERE id = :c"
            ),
            {"c": cycle.id},
        )
        session.execute(text("UPDATE chargechunk SET root = NULL"))
    with transaction(engine()) as session:
        report = audit_service.audit(session, keys=proof_keys())
    assert report.problems == []
    assert any("closed before proofs were built" in a for a in report.attention)
    # A cycle closed since the log began has no such excuse.
    second = close_two_cycles_after(cycle)
    with transaction(engine()) as session:
        session.execute(
            text("UPDATE sharingcycle SET charges_root = NULL WHERE id = :c"), {"c": second.id}
        )
    assert any("it has no proofs" in p for p in audit_problems())


def close_two_cycles_after(first: SharingCycle) -> SharingCycle:
    with transaction(engine()) as session:
        cycle_service.publish(session, "senior-cancer", PUBLISH_AT)
        second = cycle_service.begin_close(session, "senior-cancer", CLOSE_AT, chunk_size=50)
    with transaction(engine()) as session:  # a little later: after the first cycle closed
        return cycle_service.finalise(
            session, second.id, NOW_UTC + timedelta(hours=1), proof_keys()
        )


def test_chunks_charged_before_the_upgrade_get_their_roots_at_finalise(stack):
    """A close under way across migration 0006: its early chunks have no root; finalise builds
    them from their rows, and every member's proof holds."""
    close_a_cycle(before_finalise=lambda cycle_id: forget_chunk_proofs(cycle_id, below=3))
    with transaction(engine()) as session:
        cycle = session.exec(select(SharingCycle).where(SharingCycle.plan == CRITICAL)).one()
    for ref in ("C0001", "C0120", "C0229", DEPENDANTS[1]):
        document = proof_of(cycle.id, ref)
        assert proofs.holds(proofs.verify(document, trusted_key=trusted(), expected_member=ref))
    assert audit_problems() == []


def forget_chunk_proofs(cycle_id: int, below: int) -> None:
    with transaction(engine()) as session:
        session.execute(
            text("DELETE FROM proofbucket WHERE cycle_id = :c AND chunk_no < :n"),
            {"c": cycle_id, "n": below},
        )
        session.execute(
            text("UPDATE chargechunk SET root = NULL WHERE cycle_id = :c AND chunk_no < :n"),
            {"c": cycle_id, "n": below},
        )


def test_huzhu_verify_answers_malformed_files_without_a_traceback(sqlite_stack, tmp_path):
    cycle = close_a_cycle()
    honest = proof_of(cycle.id, "C0020")
    huge = json.loads(json.dumps(honest))
    step = huge["path"][0]  # siblings sit in keyed order: the leaf may come first or last
    (step["before"] or step["after"])[0] |= {"amount_fen": 2**63, "count": 2**62}
    deep = "[" * 100_000 + "]" * 100_000
    strange = json.loads(json.dumps(honest))
    strange["leaf"]["member_ref"] = "\ud800"  # a lone surrogate, as JSON may carry one
    cases = {"huge.json": json.dumps(huge), "deep.json": deep, "odd.json": json.dumps(strange)}
    for name, content in cases.items():
        (tmp_path / name).write_text(content)
        for options in ((), ("--json",)):
            answer = verify(sqlite_stack, tmp_path / name, *options)
            assert answer.returncode == 1 and "Traceback" not in answer.stderr, (
                name,
                answer.stderr,
            )
    (tmp_path / "proof.json").write_text(json.dumps(honest))
    (tmp_path / "consistency.json").write_text('{"from": 1}')
    bad = verify(
        sqlite_stack, tmp_path / "proof.json", "--consistency", str(tmp_path / "consistency.json")
    )
    assert bad.returncode == 1 and "has no consistency proof" in bad.stderr
    other = verify(sqlite_stack, tmp_path / "proof.json", "--cycle", str(cycle.id + 1))
    assert other.returncode == 1 and "not of cycle" in other.stdout
    mine = verify(sqlite_stack, tmp_path / "proof.json", "--cycle", str(cycle.id))
    assert mine.returncode == 0 and f"cycle {cycle.id}, announced" in mine.stdout
