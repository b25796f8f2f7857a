"""分摊明细's proofs over HTTP: the API's proof for the cookie's member and for the family they
pay for, saved under a name for `huzhu verify`; a refusal answered in JSON for the page's script
and as a page for a download, never a 500; the verifier script served; and the pages' CSP,
which lets script come from our own files only."""

import re

from api.pages.common import CSP
from broker.database import engine
from domain import proofs
from domain.db import transaction
from domain.models import SharingCycle
from tests.integration.api_support import serving
from tests.integration.scenario import NOW_UTC
from tests.integration.test_pages import logged_in
from tests.integration.test_proofs import DEPENDANTS, PAYER, close_a_cycle, trusted

PROBLEM = "application/problem+json"


def test_a_member_gets_their_proof_and_their_familys_from_the_charges_page(sqlite_stack, tokens):
    cycle = close_a_cycle()
    dependant = DEPENDANTS[0]
    proof = f"/app/me/charges/{cycle.id}/proof.json"
    with serving() as api:
        logged_in(api, PAYER)
        charges = api.get("/app/me/charges")
        assert charges.status_code == 200
        assert f'data-log-key="{trusted().hex()}"' in charges.text  # the log's key, to pin
        assert f'data-proof="{proof}?member={dependant}"' in charges.text
        assert f'href="{proof}?member={dependant}&amp;download=1"' in charges.text
        assert '<script type="module" src="/app/static/verify.js"></script>' in charges.text
        assert "<code>huzhu verify 文件名</code>" in charges.text  # without the script, too

        from_api = api.get(
            f"/v1/me/charges/{cycle.id}/proof", params={"member": dependant}, headers=tokens(PAYER)
        )
        shown = api.get(proof, params={"member": dependant})
        assert shown.status_code == 200 and shown.json() == from_api.json()
        assert shown.headers["cache-control"] == "private, no-store"  # the salt is theirs
        assert "content-disposition" not in shown.headers

        saved = api.get(proof, params={"download": "1"})
        assert saved.status_code == 200
        disposition = f'attachment; filename="huzhu-proof-cycle-{cycle.id}-{PAYER}.json"'
        assert saved.headers["content-disposition"] == disposition
        checks = proofs.verify(saved.json(), trusted_key=trusted(), expected_member=PAYER)
        assert proofs.holds(checks), checks


def test_a_proof_that_is_not_there_or_not_yours_is_refused_not_a_500(sqlite_stack):
    cycle = close_a_cycle()
    proof = f"/app/me/charges/{cycle.id}/proof.json"
    with serving() as api:
        logged_out = api.get(proof)
        assert logged_out.status_code == 401
        assert logged_out.headers["content-type"] == PROBLEM
        to_login = api.get(proof, params={"download": "1"})
        assert to_login.status_code == 303
        assert to_login.headers["location"] == "/app/login?next=/app/me/charges"

        logged_in(api, "C0010")
        for params in ({"member": "C0011"}, {"member": DEPENDANTS[0]}):  # not theirs
            answer = api.get(proof, params=params)
            assert answer.status_code == 404 and answer.headers["content-type"] == PROBLEM
            page = api.get(proof, params=params | {"download": "1"})
            assert page.status_code == 404 and "没有找到" in page.text
            assert page.headers["content-type"].startswith("text/html")
        elsewhere = api.get("/app/me/charges/999/proof.json")
        assert elsewhere.status_code == 404 and elsewhere.json()["type"].endswith("/not-found")
        for bad in ("0", "abc", str(2**40)):
            refused = api.get(f"/app/me/charges/{bad}/proof.json")
            assert refused.status_code == 422 and "地址有误" in refused.text, bad

        with transaction(engine()) as session:  # its charge rows archived: no proof to build
            archived = session.get(SharingCycle, cycle.id)
            archived.charges_archived_at = NOW_UTC
            session.add(archived)
        gone = api.get(proof)
        assert gone.status_code == 404 and gone.json()["type"].endswith("/no-proof")
        page = api.get(proof, params={"download": "1"})
        assert page.status_code == 404 and "本期暂无可核对的证明" in page.text
        assert "archived" in page.text


def test_the_script_is_served_and_pages_run_only_our_own(sqlite_stack):
    with serving() as api:
        script = api.get("/app/static/verify.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["cache-control"] == "no-cache"  # checked again before each use
        assert script.headers["x-content-type-options"] == "nosniff"
        assert "export async function verifyProof(" in script.text
        kept = api.get("/app/static/verify.js", headers={"If-None-Match": script.headers["etag"]})
        assert kept.status_code == 304
        assert api.get("/app/static/nothing.js").status_code == 404

        assert "script-src 'self'" in CSP and "unsafe-eval" not in CSP
        assert "frame-ancestors 'none'" in CSP and "base-uri 'none'" in CSP
        logged_in(api, "C0001")
        for path in ("/app", "/app/login", "/app/me", "/app/me/charges", "/app/no-such-page"):
            answer = api.get(path)
            assert answer.headers["content-security-policy"] == CSP, path
            tags = re.findall(r"<script\b[^>]*>", answer.text)
            assert all('src="/app/static/' in tag for tag in tags), (path, tags)  # none inline
