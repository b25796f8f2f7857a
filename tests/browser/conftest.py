"""The member's pages in Debian's Chromium, driven by Playwright (no browser is downloaded):
the demo's data served by `huzhu serve` as a new user runs it, each page checked by axe-core
and photographed at 390×844."""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PHONE = {"width": 390, "height": 844}
# Every test run keeps its screenshots here; HUZHU_UPDATE_SCREENSHOTS=1 also refreshes the
# README's copies in docs/screenshots.
ARTIFACTS = Path(os.environ.get("HUZHU_TEST_ARTIFACTS", ROOT / "test-artifacts" / "screenshots"))
DOCS = ROOT / "docs" / "screenshots"
BLOCKING = {"serious", "critical"}


def chromium() -> str:
    found = os.environ.get("HUZHU_TEST_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "Debian's Chromium is needed for the browser tests: "
            "sudo apt-get install -y $(grep -v '^#' system-packages.txt)"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module-scoped: Playwright's sync API keeps an event loop running in this thread while
    # it is open, and the tests after these (asyncio.run in the gateways') need it gone.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


def huzhu(data: Path, *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=os.environ | {"HUZHU_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"huzhu {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


@dataclass
class Site:
    """The demo's data served on loopback; the API's clock a day into an objection week."""

    data: Path
    url: str
    announce_on: date
    process: subprocess.Popen | None = None

    def token(self, member_ref: str, *roles: str) -> dict[str, str]:
        args = [a for role in roles for a in ("--role", role)]
        token = json.loads(huzhu(self.data, "api", "token", member_ref, *args, "--json"))["token"]
        return {"Authorization": f"Bearer {token}"}

    def serve(self, *args: str) -> None:
        self.stop()
        port = int(self.url.rsplit(":", 1)[1])
        log = (self.data / "serve.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), *args],
            env=os.environ | {"HUZHU_DATA_DIR": str(self.data)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.data / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("huzhu serve did not answer /healthz in 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


def wait_for_state(site: Site, submission_id: str, headers: dict, state: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = httpx.get(f"{site.url}/v1/claims/{submission_id}", headers=headers).json()
        if found.get("state") == state:
            return
        time.sleep(0.3)
    raise AssertionError(f"{submission_id} never reached {state}: {found}")


def apply(site: Site, headers: dict, submission_id: str, member_ref: str, icd10: str) -> None:
    claim = {
        "submission_id": submission_id,
        "member_ref": member_ref,
        "plan": "critical-illness",
        "icd10": icd10,
        "diagnosed_on": (date.today() - timedelta(days=10)).isoformat(),
        "hospital": "广州市第一人民医院",
        "accident": False,
    }
    sent = httpx.post(
        f"{site.url}/v1/claims",
        json=claim,
        headers=headers | {"Idempotency-Key": f"key-{submission_id}"},
    )
    assert sent.status_code == 202, sent.text


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """As the README's walk: the demo kept, a claim scheduled and one sent to a person; the
    next 公示 published; the API restarted a day into its objection week, where the person
    rejects the second claim."""
    data = tmp_path_factory.mktemp("demo")
    huzhu(data, "demo", "--keep", str(data))
    served = Site(data, f"http://127.0.0.1:{free_port()}", date.today())
    try:
        served.serve()
        patient, kidney = served.token("M0000113"), served.token("M0000114")
        apply(served, patient, "app-1", "M0000113", "C73")
        apply(served, kidney, "app-2", "M0000114", "N18.5")
        wait_for_state(served, "app-1", patient, "scheduled")
        wait_for_state(served, "app-2", kidney, "needs_review")
        published = huzhu(
            data, "cycle", "publish", "--plan", "critical-illness", "--at", "next", "--json"
        )
        served.announce_on = date.fromisoformat(json.loads(published)["announce_on"])
        wait_for_state(served, "app-1", patient, "announced")
        served.serve("--clock-at", f"{served.announce_on + timedelta(days=1)}T10:00:00+08:00")
        # Rejected on the rehearsal clock, so that the 30 days to ask a jury run from there.
        for reviewer in ("DR-WANG", "DR-LI"):  # a rejection rests on two reviewers
            decided = httpx.post(
                f"{served.url}/v1/review/claims/app-2/decision",
                json={"approve": False, "reason": "criteria_not_met"},
                headers=served.token(reviewer, "reviewer"),
            )
            assert decided.status_code == 200, decided.text
        assert decided.json()["state"] == "rejected"
        yield served
    finally:
        served.stop()


class Phone:
    """One member's phone: a browser context of its own (its own cookie), pages checked by
    axe and photographed."""

    def __init__(self, browser: Browser, site: Site, member_ref: str) -> None:
        self.site, self.member_ref = site, member_ref
        self.context = browser.new_context(viewport=PHONE, locale="zh-CN")
        self.page: Page = self.context.new_page()

    def log_in(self) -> None:
        self.page.goto(f"{self.site.url}/app/login")
        self.page.get_by_label("成员编号").fill(self.member_ref)
        self.page.get_by_role("button", name="登录").click()
        self.page.wait_for_url("**/app/me")

    def open(self, path: str) -> Page:
        self.page.goto(f"{self.site.url}{path}")
        return self.page

    def check(self, name: str) -> None:
        """axe-core on the page as it is now (no serious or critical violation), and a
        screenshot of it."""
        found = Axe().run(self.page).response["violations"]
        blocking = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in found
            if v["impact"] in BLOCKING
        ]
        assert not blocking, f"{name}: {blocking}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=shot)
        if os.environ.get("HUZHU_UPDATE_SCREENSHOTS"):
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, DOCS / shot.name)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser, site) -> Iterator:
    opened: list[Phone] = []

    def open_phone(member_ref: str) -> Phone:
        made = Phone(browser, site, member_ref)
        made.log_in()
        opened.append(made)
        return made

    yield open_phone
    for made in opened:
        made.close()
