"""分摊明细 checks each charge's proof in the page (api/pages/static/verify.js, WebCrypto): every
line of a member and of the family they pay for says it is verified, the browser's verifier and
domain.proofs.verify decide alike on real proofs and on each kind of tampering, a fen changed in
the database shows as a failure on its line, and a browser without Ed25519 says it cannot check
instead of claiming anything."""

import copy
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import date
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Page, expect

from domain import proofs, translog
from domain.money import yuan
from tests.browser.conftest import Phone, Site, huzhu
from tests.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
VERIFIED = re.compile(r"^✓ 已验证：")
DONE = re.compile(r"^(✓|✗|此浏览器无法验证|本期暂无)")
# The proofs fetched as 分摊明细's script fetches them (same origin, the member's cookie).
FETCH_ALL = """async (urls) => Promise.all(urls.map(async (url) => {
  const answer = await fetch(url);
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.text();
}))"""
# verifyProof on each document, in the page: the module as the page loads it, under its CSP.
VERIFY_ALL = """async (documents) => {
  const { verifyProof } = await import("/app/static/verify.js");
  const results = [];
  for (const d of documents) {
    results.push(await verifyProof(d.text, { trustedKey: d.key, expectedMember: d.member }));
  }
  return results;
}"""
NO_ED25519 = """(() => {
  const importKey = SubtleCrypto.prototype.importKey;
  SubtleCrypto.prototype.importKey = function (format, key, algorithm, ...rest) {
    if ((algorithm?.name ?? algorithm) === "Ed25519") {
      return Promise.reject(new DOMException("Unrecognized name", "NotSupportedError"));
    }
    return importKey.call(this, format, key, algorithm, ...rest);
  };
})();"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """A small demo of its own, served as `huzhu serve` serves it: a test here changes a charge
    in its database (and puts it back), so the pages suite's demo is never touched."""
    data = tmp_path_factory.mktemp("proof-demo")
    huzhu(data, "demo", "--members", "300", "--claims", "16", "--keep", str(data))
    served = Site(data, f"http://127.0.0.1:{free_port()}", date.today())
    try:
        served.serve()
        yield served
    finally:
        served.stop()


def query(site: Site, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(site.data / "huzhu.db") as db:
        return db.execute(sql, args).fetchall()


def payer_and_dependant(site: Site) -> tuple[str, str, int]:
    """A member who pays for a family member, both charged in the same cycle, and the cycle."""
    [found] = query(
        site,
        "SELECT p.member_ref, d.member_ref, cp.cycle_id FROM member d"
        " JOIN member p ON p.id = d.payer_id JOIN charge cd ON cd.member_id = d.id"
        " JOIN charge cp ON cp.member_id = p.id AND cp.cycle_id = cd.cycle_id"
        " ORDER BY p.id, cp.cycle_id DESC LIMIT 1",
    )
    return found


def charge_lines(site: Site, payer: str) -> list[tuple[int, str, int]]:
    """(cycle, member_ref, amount) of every charge of the member and of those they pay for."""
    return query(
        site,
        "SELECT c.cycle_id, m.member_ref, c.amount_fen FROM charge c JOIN member m"
        " ON m.id = c.member_id LEFT JOIN member p ON p.id = m.payer_id"
        " WHERE m.member_ref = ? OR p.member_ref = ?",
        payer,
        payer,
    )


def proof_texts(member: Phone, wanted: list[tuple[int, str]]) -> list[str]:
    """The proofs' JSON texts, from the member's page."""
    urls = [f"/app/me/charges/{cycle}/proof.json?member={quote(ref)}" for cycle, ref in wanted]
    return member.page.evaluate(FETCH_ALL, urls)


def statuses_done(page: Page) -> list[str]:
    for status in page.locator(".charge .proof-status").all():
        expect(status).to_have_text(DONE, timeout=15_000)
    return page.locator(".charge .proof-status").all_inner_texts()


def test_every_charge_line_says_its_proof_is_verified_and_its_file_downloads(phone, site, tmp_path):
    payer, dependant, cycle_id = payer_and_dependant(site)
    member = phone(payer)
    page = member.open("/app/me/charges")
    lines = charge_lines(site, payer)
    assert page.locator(".charge").count() == len(lines) >= 2
    statuses_done(page)
    for cycle, ref, amount in lines:
        status = page.locator(f"#charge-{cycle}-{ref} .proof-status")
        assert status.get_attribute("aria-live") == "polite"
        whose = "您的" if ref == payer else f"{ref} 的"
        expect(status).to_have_text(VERIFIED)
        expect(status).to_contain_text(f"{whose} {yuan(amount)} 元计入本期")
    member.check("charges-verified")

    shown = page.locator(f"#charge-{cycle_id}-{dependant}")
    with page.expect_download() as downloading:
        shown.get_by_role("link", name="下载证明").click()
    saved = downloading.value
    assert saved.suggested_filename == f"huzhu-proof-cycle-{cycle_id}-{dependant}.json"
    path = tmp_path / saved.suggested_filename
    saved.save_as(path)
    key = page.locator("[data-log-key]").get_attribute("data-log-key")
    assert key == httpx.get(f"{site.url}/v1/log/heads/latest").json()["public_key"]
    assert key in page.locator(".offline").inner_text()  # for `huzhu verify --key`
    # What `huzhu verify FILE --key KEY --member REF` reads and checks (tests/integration
    # /test_proofs.py runs the command itself).
    downloaded = json.loads(path.read_text(encoding="utf-8"))
    checks = proofs.verify(downloaded, trusted_key=bytes.fromhex(key), expected_member=dependant)
    assert proofs.holds(checks), checks


def first_sibling(d: dict) -> dict:
    level = d["path"][0]
    return (level["before"] or level["after"])[0]


def first_case(d: dict) -> dict:
    if not d["cases"]:
        d["cases"].append({"case_ref": "C-1", "amount_fen": 1})
    return d["cases"][0]


def resigned(d: dict, **head_changes) -> None:
    """The head re-signed, with changes, by a key that is not the log's."""
    other = Ed25519PrivateKey.generate()
    head = d["log"]["head"] | head_changes
    tree_head = translog.TreeHead(head["size"], head["timestamp_ms"], bytes.fromhex(head["root"]))
    d["log"]["head"] = proofs.head_json(
        tree_head, translog.sign_head(tree_head, other), other.public_key().public_bytes_raw()
    )


def entry_changed(**fields) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        d["log"]["entry"] = json.dumps(json.loads(d["log"]["entry"]) | fields)

    return change


def with_entry(text: str) -> Callable[[dict], None]:
    return lambda d: d["log"].update(entry=text)


def flipped(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


# (what, change to the document, the step domain.proofs.verify fails at on the payer's own proof
# of a cycle with cases; None: it holds). The tampering of tests/unit/test_sumtree.py, on proofs
# the served app gave, and the odd shapes where the JSON's types decide.
TAMPERING: list[tuple[str, Callable[[dict], object], str | None]] = [
    ("honest", lambda d: None, None),
    (
        "amount changed",
        lambda d: d["leaf"].update(amount_fen=d["leaf"]["amount_fen"] - 1),
        "path to the root",
    ),
    ("amount negative", lambda d: d["leaf"].update(amount_fen=-1), "your leaf"),
    ("amount above the share", lambda d: d["leaf"].update(amount_fen=10**6), "your leaf"),
    ("amount beyond 2^53", lambda d: d["leaf"].update(amount_fen=2**53 + 1), "your leaf"),
    (
        "amount a float",
        lambda d: d["leaf"].update(amount_fen=float(d["leaf"]["amount_fen"])),
        "your leaf",
    ),
    ("leaf counts two", lambda d: d["leaf"].update(count=2), "your leaf"),
    ("leaf counts true", lambda d: d["leaf"].update(count=True), "your leaf"),  # not an int
    (
        "leaf of another cycle",
        lambda d: d["leaf"].update(cycle_id=d["leaf"]["cycle_id"] + 1),
        "your leaf",
    ),
    ("salt removed", lambda d: d["leaf"].pop("salt"), "your leaf"),
    ("salt short", lambda d: d["leaf"].update(salt=d["leaf"]["salt"][:30]), "your leaf"),
    ("salt not hex", lambda d: d["leaf"].update(salt="zz" + d["leaf"]["salt"][2:]), "your leaf"),
    ("salt in capitals", lambda d: d["leaf"].update(salt=d["leaf"]["salt"].upper()), None),
    (
        "salt spaced",
        lambda d: d["leaf"].update(salt=" ".join(re.findall("..", d["leaf"]["salt"]))),
        None,
    ),
    ("leaf of another member", lambda d: d["leaf"].update(member_ref="M9999999"), "your leaf"),
    ("leaf not an object", lambda d: d.update(leaf=[]), "your leaf"),
    ("negative sibling", lambda d: first_sibling(d).update(amount_fen=-300), "path to the root"),
    (
        "sibling understated",
        lambda d: first_sibling(d).update(amount_fen=first_sibling(d)["amount_fen"] - 1),
        "path to the root",
    ),
    ("sibling padded", lambda d: first_sibling(d).update(amount_fen=10**9), "path to the root"),
    ("sibling counts none", lambda d: first_sibling(d).update(count=0), "path to the root"),
    (
        "sibling count a float",
        lambda d: first_sibling(d).update(count=float(first_sibling(d)["count"])),
        "path to the root",
    ),
    (
        "sibling hash changed",
        lambda d: first_sibling(d).update(hash=flipped(first_sibling(d)["hash"])),
        "path to the root",
    ),
    ("level emptied", lambda d: d["path"][0].update(before=[], after=[]), "path to the root"),
    (
        "level of sixteen",
        lambda d: d["path"][0].update(after=d["path"][0]["after"] + [first_sibling(d)] * 15),
        "path to the root",
    ),
    ("path an empty object", lambda d: d.update(path={}), "path to the root"),
    ("path a string", lambda d: d.update(path="x"), "path to the root"),
    (
        "root understated",
        lambda d: d["root"].update(amount_fen=d["root"]["amount_fen"] - 1),
        "path to the root",
    ),
    (
        "root changed",
        lambda d: d["root"].update(hash=flipped(d["root"]["hash"])),
        "path to the root",
    ),
    ("cases added", lambda d: d["cases"].append({"case_ref": "C-2", "amount_fen": 1}), "cases"),
    ("cases removed", lambda d: d.update(cases=[]), "cases"),
    ("case amount a float", lambda d: first_case(d).update(amount_fen=1.5), "cases"),
    ("entry's total changed", entry_changed(charged_fen=1), "totals"),
    ("entry's root changed", entry_changed(charges_root="00" * 32), "totals"),
    ("entry's cases root changed", entry_changed(cases_root="00" * 32), "cases"),
    ("entry of version 2", entry_changed(v=2), "format"),
    ("entry's members negative", entry_changed(members=-1), "format"),
    ("entry's share a float", entry_changed(share_fen=30.0), "format"),
    ("entry not JSON", with_entry("{"), "format"),
    ("entry a list", with_entry("[1]"), "format"),
    ("entry's plan renamed", entry_changed(plan="other"), "log entry"),
    (
        "leaf_index changed",
        lambda d: d["log"].update(leaf_index=1 - d["log"]["leaf_index"]),
        "log entry",
    ),
    ("leaf_index true", lambda d: d["log"].update(leaf_index=True), "log entry"),
    ("inclusion lengthened", lambda d: d["log"]["inclusion"].append("00" * 32), "log entry"),
    ("inclusion emptied", lambda d: d["log"].update(inclusion=[]), "log entry"),
    ("head size changed", lambda d: d["log"]["head"].update(size=3), "log entry"),
    (
        "head root changed",
        lambda d: d["log"]["head"].update(root=flipped(d["log"]["head"]["root"])),
        "log entry",
    ),
    ("head timestamp changed", lambda d: d["log"]["head"].update(timestamp_ms=1), "signed head"),
    (
        "head timestamp a float",
        lambda d: d["log"]["head"].update(timestamp_ms=float(d["log"]["head"]["timestamp_ms"])),
        "signed head",
    ),
    (
        "signature changed",
        lambda d: d["log"]["head"].update(signature=flipped(d["log"]["head"]["signature"])),
        "signed head",
    ),
    (
        "signature short",
        lambda d: d["log"]["head"].update(signature=d["log"]["head"]["signature"][:64]),
        "signed head",
    ),
    ("head signed with another key", lambda d: resigned(d), "signed head"),
    (
        "our key named, another's signature",
        lambda d: resigned(d) or d["log"]["head"].update(public_key=d["_key"]),
        "signed head",
    ),
    ("version 2", lambda d: d.update(version=2), "format"),
    ("version 1.0", lambda d: d.update(version=1.0), "format"),  # a float is not a version
    ("another kind", lambda d: d.update(kind="something-else"), "format"),
    ("log removed", lambda d: d.pop("log"), "format"),
]


def variants(document: dict, key: str, member: str) -> list[tuple[str, str, str, str | None]]:
    """(what, JSON text, trusted key, expected member) for each tampering of the document, and
    the ones that change whose proof and which key are trusted."""
    made = []
    for what, change, _ in TAMPERING:
        changed = copy.deepcopy(document) | {"_key": key}
        change(changed)
        changed.pop("_key", None)
        made.append((what, json.dumps(changed), key, member))
    text = json.dumps(document)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    shown = copy.deepcopy(document)
    shown["leaf"]["member_ref"] = "M9999999"  # another member is shown this leaf and path
    made += [
        ("leaf shown to another member", json.dumps(shown), key, "M9999999"),
        ("wrong member", text, key, "M9999999"),
        ("no member expected", text, key, None),
        ("another key trusted", text, other, member),
        ("not an object", "[]", key, member),
    ]
    return made


def python_checks(text: str, key: str, member: str | None) -> list[proofs.Check]:
    return proofs.verify(json.loads(text), trusted_key=bytes.fromhex(key), expected_member=member)


def test_the_browsers_verifier_decides_as_pythons_on_every_tampering(phone, site):
    payer, dependant, cycle_id = payer_and_dependant(site)
    [(last, last_cycle)] = query(
        site,
        "SELECT m.member_ref, c.cycle_id FROM charge c JOIN member m ON m.id = c.member_id"
        " WHERE m.payer_id IS NULL ORDER BY m.id DESC LIMIT 1",
    )
    key = httpx.get(f"{site.url}/v1/log/heads/latest").json()["public_key"]
    family = phone(payer)
    texts = proof_texts(family, [(cycle_id, payer), (cycle_id, dependant)])
    texts += proof_texts(phone(last), [(last_cycle, last)])
    documents = []
    for text, whose in zip(texts, (payer, dependant, last), strict=True):
        documents += variants(json.loads(text), key, whose)

    sent = [{"text": text, "key": k, "member": m} for _, text, k, m in documents]
    in_browser = family.page.evaluate(VERIFY_ALL, sent)

    assert len(in_browser) == len(documents)
    for (what, text, k, m), js in zip(documents, in_browser, strict=True):
        python = python_checks(text, k, m)
        assert [(c["name"], c["ok"]) for c in js] == [(c.name, c.ok) for c in python], (
            what,
            js,
            python,
        )
        for mine, theirs in zip(js, python, strict=True):
            if not theirs.detail.startswith("malformed:"):
                assert mine["detail"] == theirs.detail, (what, mine, theirs)
    # The changes do what the unit tests say they do (on the payer's own proof).
    for (what, _, expected), (_, text, k, m) in zip(TAMPERING, documents, strict=False):
        failed = next((c.name for c in python_checks(text, k, m) if not c.ok), None)
        assert failed == expected, what


def test_a_fen_changed_in_the_database_shows_as_a_failure_on_its_line(phone, site):
    payer, _, cycle_id = payer_and_dependant(site)
    [(member_id, amount)] = query(
        site,
        "SELECT c.member_id, c.amount_fen FROM charge c JOIN member m ON m.id = c.member_id"
        " WHERE m.member_ref = ? AND c.cycle_id = ?",
        payer,
        cycle_id,
    )
    assert amount > 0
    member = phone(payer)
    change = "UPDATE charge SET amount_fen = ? WHERE cycle_id = ? AND member_id = ?"
    try:
        query(site, change, amount - 1, cycle_id, member_id)
        page = member.open("/app/me/charges")
        shown = page.locator(f"#charge-{cycle_id}-{payer}")
        assert shown.locator(".charged").inner_text() == yuan(amount - 1)
        statuses_done(page)
        status = shown.locator(".proof-status")
        expect(status).to_have_text(re.compile(r"^✗ 验证未通过：到总根的路径"))
        expect(status).to_contain_text("the path does not lead to the root it names")
        assert "bad" in (status.get_attribute("class") or "")
    finally:
        query(site, change, amount, cycle_id, member_id)
    page = member.open("/app/me/charges")
    expect(page.locator(f"#charge-{cycle_id}-{payer} .proof-status")).to_have_text(VERIFIED)


def test_without_ed25519_or_javascript_the_page_claims_nothing(browser, site):
    payer, _, _ = payer_and_dependant(site)
    unable = Phone(browser, site, payer)
    try:
        unable.context.add_init_script(NO_ED25519)
        unable.log_in()
        page = unable.open("/app/me/charges")
        for text in statuses_done(page):
            assert text == "此浏览器无法验证，请下载证明用 huzhu verify 核对"
    finally:
        unable.close()

    context = browser.new_context(java_script_enabled=False, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(f"{site.url}/app/login?next=/app/me/charges")
        page.get_by_label("成员编号").fill(payer)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/app/me/charges")
        assert page.locator(".charge").count() >= 1
        assert set(page.locator(".charge .proof-status").all_inner_texts()) == {""}
        links = page.get_by_role("link", name="下载证明")
        assert links.count() == page.locator(".charge").count()
        assert "huzhu verify 文件名" in page.locator(".offline").inner_text()
    finally:
        context.close()


VERIFY_CYCLE = """async ([text, key, cycle]) => {
  const { verifyProof } = await import("/app/static/verify.js");
  return await verifyProof(text, { trustedKey: key, expectedCycle: cycle });
}"""


def test_a_proof_of_another_cycle_than_its_line_is_refused_as_python_refuses_it(phone, site):
    payer, _, cycle_id = payer_and_dependant(site)
    key = httpx.get(f"{site.url}/v1/log/heads/latest").json()["public_key"]
    family = phone(payer)
    [text] = proof_texts(family, [(cycle_id, payer)])
    for cycle, holds in ((cycle_id, True), (cycle_id + 1, False)):
        js = family.page.evaluate(VERIFY_CYCLE, [text, key, cycle])
        python = proofs.verify(
            json.loads(text), trusted_key=bytes.fromhex(key), expected_cycle=cycle
        )
        assert [(c["name"], c["ok"], c["detail"]) for c in js] == [
            (c.name, c.ok, c.detail) for c in python
        ]
        assert proofs.holds(python) is holds
