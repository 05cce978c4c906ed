"""The console as people use it, in a real headless Chromium against the real app, database and worker.

Each test sets its organisations up through the API (quicker than clicking, and not what is under
test), then does in the browser what a person would: sign in, read the overview's charts, find a
transfer, approve one in review, read a drift finding, sign out; and what the console must refuse:
another organisation's pages and a form without its CSRF token.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.browser.console import TIMEZONE, canvas_pixels, docs_screenshot, drawn_points, sign_in, text_after_reloads
from tests.client import ApiClient, User

# A transfer above this waits IN_REVIEW for a second OWNER/ADMIN (the organisation's fraud rule).
REVIEW_OVER = 500


def completed_transfer(api: ApiClient, owner: User, source: str, destination: str, amount: int) -> str:
    response = api.transfer(owner, source, destination, amount)
    assert response.status_code == 202, response.json
    transaction_id = str(response.json["id"])  # type: ignore[index]
    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"
    return transaction_id


def transfer_in_review(api: ApiClient, owner: User) -> str:
    """A transfer of REVIEW_OVER + 1 from a funded wallet, stopped by the review_amount_over rule."""
    source = api.funded_wallet(owner, 10_000)
    destination = api.create_wallet(owner)
    rules = api.request("PUT", "/organizations/fraud-rules", owner, json={"review_amount_over": REVIEW_OVER})
    assert rules.status_code == 200, rules.json
    response = api.transfer(owner, source, destination, REVIEW_OVER + 1)
    assert response.status_code == 202, response.json
    transaction_id = str(response.json["id"])  # type: ignore[index]
    for _ in range(30):
        status = api.get(f"/transactions/{transaction_id}?wait=2", owner).json["status"]  # type: ignore[index]
        if status != "PENDING":
            break
    assert status == "IN_REVIEW", status
    return transaction_id


def status_of(api: ApiClient, user: User, transaction_id: str) -> str:
    return str(api.get(f"/transactions/{transaction_id}", user).json["status"])  # type: ignore[index]


@pytest.fixture
def history(api: ApiClient) -> tuple[User, str, str, str]:
    """An OWNER whose organisation has moved money: two deposits and two settled transfers."""
    owner = api.signup("Northwind Payments")
    source = api.funded_wallet(owner, 250_000)
    destination = api.funded_wallet(owner, 40_000)
    completed_transfer(api, owner, source, destination, 12_500)
    transfer_id = completed_transfer(api, owner, source, destination, 3_725)
    return owner, source, destination, transfer_id


def test_an_owner_signs_in_reads_the_charts_and_opens_a_transfer_found_by_id(page, history):
    owner, source, destination, transfer_id = history
    sign_in(page, owner)
    assert re.search(r"/console/?$", page.url), page.url

    # Every chart of the overview (volume, success rate, settle latency) has drawn this organisation's
    # data: the console says how many points each drew, and its canvas holds the series' colours.
    charts = page.locator("[data-chart]")
    assert charts.count() > 0, "the overview has no chart"
    page.wait_for_function("() => [...document.querySelectorAll('[data-chart]')].every(c => c.dataset.drawnPoints)")
    for chart in (charts.nth(i) for i in range(charts.count())):
        name = chart.get_attribute("data-chart")
        assert drawn_points(chart) > 0, f"chart {name} drew no point"
        pixels = canvas_pixels(chart)
        assert pixels["painted"] > 0 and pixels["coloured"] > 0, (name, pixels)
    docs_screenshot(page, "console-overview")

    # The transfer, found by its id in the transactions page's search box, then opened.
    page.goto("/console/transactions")
    search = page.locator("input[type=search], input[name=q], input[name=search]").first
    search.fill(transfer_id)
    with page.expect_navigation():
        search.press("Enter")
    if not page.url.rstrip("/").endswith(transfer_id):  # a search may list the match or open it at once
        rows = page.locator("[data-id]")
        rows.first.wait_for()
        assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == [transfer_id]
        row = page.locator(f"[data-id='{transfer_id}']")
        links = row.locator("a")
        (links.first if links.count() else row).click()
        page.wait_for_url(re.compile(rf"/console/transactions/{transfer_id}/?$"))
    assert transfer_id in page.locator("body").inner_text()
    assert "COMPLETED" in page.locator("h1").inner_text()  # the page's title carries its status
    # Its entries: one debit on the source, one credit on the destination.
    for wallet_id in (source, destination):
        assert page.locator(f"a[href*='{wallet_id}']").count() > 0, f"no link to wallet {wallet_id}"
    docs_screenshot(page, "console-transaction")

    # Times in the viewer's zone: each <time> shows its UTC instant as a clock in Asia/Kolkata reads it.
    stamp = page.locator("time[datetime]").first
    instant = datetime.fromisoformat(str(stamp.get_attribute("datetime")))
    local = instant.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M:%S")
    assert local in stamp.inner_text(), (instant, stamp.inner_text())

    # From the transfer to its source wallet: the wallet's balance chart has drawn its three entries.
    with page.expect_navigation():
        page.locator(f"a[href$='/wallets/{source}']").first.click()
    chart = page.locator("[data-chart]").first
    page.wait_for_function("() => document.querySelector('[data-chart]').dataset.drawnPoints")
    assert drawn_points(chart) >= 3, drawn_points(chart)
    assert canvas_pixels(chart)["coloured"] > 0


def test_signing_out_ends_the_session(page, api):
    owner = api.signup("Initech Treasury")
    sign_in(page, owner)
    page.locator("button, a, input[type=submit]").filter(has_text=re.compile(r"(log|sign) ?out", re.I)).first.click()
    page.wait_for_url(re.compile(r"/console/login"))
    for path in ("/console/", "/console/transactions"):
        page.goto(path)
        assert "/console/login" in page.url, f"{path} answered signed out at {page.url}"


def test_a_second_admin_approves_a_transfer_in_review_and_watches_it_complete(page, api):
    owner = api.signup("Harbour Logistics")
    admin = api.add_user(owner, "ADMIN")
    transaction_id = transfer_in_review(api, owner)

    # Four eyes: the transfer's creator has the buttons too, but their approval is refused.
    sign_in(page, owner)
    page.goto("/console/reviews")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.locator(f"[data-id='{transaction_id}'] button[name=approve]").click()
    assert posted.value.status == 403, posted.value.status
    assert status_of(api, owner, transaction_id) == "IN_REVIEW"

    page.context.clear_cookies()
    sign_in(page, admin)
    page.goto("/console/reviews")
    row = page.locator(f"[data-id='{transaction_id}']")
    row.wait_for()
    docs_screenshot(page, "console-reviews")
    with page.expect_navigation():
        row.locator("button[name=approve]").click()

    page.goto(f"/console/transactions/{transaction_id}")
    assert "COMPLETED" in text_after_reloads(page, "h1", "COMPLETED")
    settled = api.wait_final(owner, transaction_id)
    assert (settled["status"], settled["review_decision"], settled["reviewed_by"]) == (
        "COMPLETED",
        "APPROVED",
        admin.id,
    )


def test_a_form_sent_without_its_csrf_token_is_refused(page, context, api, console_url):
    owner = api.signup("Umbrella Freight")
    admin = api.add_user(owner, "ADMIN")
    transaction_id = transfer_in_review(api, owner)
    sign_in(page, admin)
    page.goto("/console/reviews")
    row = page.locator(f"[data-id='{transaction_id}']")
    row.wait_for()
    removed = page.evaluate(
        "() => { const tokens = document.querySelectorAll('input[name=csrf_token]');"
        " tokens.forEach(t => t.remove()); return tokens.length; }"
    )
    assert removed > 0, "the review queue's forms carry no csrf_token"
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        row.locator("button[name=approve]").click()
    assert posted.value.status == 400, posted.value.status
    assert status_of(api, owner, transaction_id) == "IN_REVIEW"

    # The login form too: a sign-in posted without a token signs nobody in.
    signed_out = context.browser.new_context(base_url=console_url)
    try:
        refused = signed_out.request.post(
            "/console/login", form={"email": admin.email, "password": admin.password}, max_redirects=0
        )
        assert refused.status == 400, refused.status
        after = signed_out.request.get("/console/", max_redirects=0)
        assert after.status in (302, 303) and "/console/login" in after.headers["location"]
        # The same post with the token its login page carries signs in: the token was what was missing.
        form_page = signed_out.request.get("/console/login").text()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form_page)
        assert token, "the login form carries no csrf_token"
        accepted = signed_out.request.post(
            "/console/login",
            form={"email": admin.email, "password": admin.password, "csrf_token": token.group(1)},
            max_redirects=0,
        )
        assert accepted.status in (302, 303) and "/console/login" not in accepted.headers["location"]
    finally:
        signed_out.close()


@pytest.fixture
def tampered(api: ApiClient, db) -> Iterator[tuple[User, str]]:
    """A wallet whose cached balance was raised by 7 behind the application's back, put right afterwards
    so that platform-wide reconciliation elsewhere in the run stays clean."""
    owner = api.signup("Tamper Test Ltd")
    wallet_id = api.funded_wallet(owner, 10_000)
    db.execute("UPDATE wallets SET balance = balance + 7 WHERE id = :id", id=wallet_id)
    yield owner, wallet_id
    db.execute("UPDATE wallets SET balance = balance - 7 WHERE id = :id", id=wallet_id)


def test_a_tampered_balance_shows_as_a_drift_finding(page, api, tampered):
    owner, wallet_id = tampered
    response = api.post("/reconciliation/run", owner, json={"mode": "FULL"})
    assert response.status_code == 201, response.json
    run: dict[str, Any] = dict(response.json)
    assert run["status"] == "DRIFT"

    sign_in(page, owner)
    page.goto("/console/reconciliation")
    row = page.locator(f"[data-id='{run['id']}']")
    row.wait_for()
    assert "DRIFT" in row.inner_text().upper()
    # The finding is on the run's own page (or inline): a row linking to the wallet, naming the check
    # and the difference of 7 minor units.
    finding = page.locator("[data-id]").filter(has=page.locator(f"a[href$='/wallets/{wallet_id}']"))
    if not finding.count():
        links = row.locator("a")
        with page.expect_navigation():
            (links.first if links.count() else row).click()
    text = finding.first.inner_text()
    assert re.search(r"balance.?mismatch", text, re.I), f"the finding does not say what drifted: {text}"
    assert "0.07" in text, f"the finding does not give the difference: {text}"
    docs_screenshot(page, "console-reconciliation")


def test_a_member_of_another_organisation_gets_404_for_its_pages(page, api, history):
    _owner, source, _destination, transfer_id = history
    outsider = api.add_user(api.signup("Globex Trading"), "MEMBER")
    sign_in(page, outsider)
    own = page.goto("/console/wallets")
    assert own is not None and own.status == 200
    for path in (f"/console/wallets/{source}", f"/console/transactions/{transfer_id}"):
        answered = page.goto(path)
        assert answered is not None and answered.status == 404, (path, answered and answered.status)
        assert answered.headers["content-type"].startswith("text/html")  # a page, not the API's JSON
        text = page.locator("body").inner_text()
        assert source not in text and transfer_id not in text
    # The same answer as for an id that exists nowhere: a 404 tells nothing about the other organisation.
    nowhere = page.goto(f"/console/wallets/{uuid.uuid4()}")
    assert nowhere is not None and nowhere.status == 404


def test_an_operator_sees_every_organisation_on_the_platform_page(page, api, history):
    owner = history[0]
    sign_in(page, owner)
    refused = page.goto("/console/platform")
    assert refused is not None and refused.status in (403, 404), "the platform page is for operators"

    page.context.clear_cookies()
    sign_in(page, api.operator())
    page.goto("/console/platform")
    page.locator(f"[data-id='{owner.organization_id}']").wait_for()
    # The workers, asked with Celery's inspect as Flower does: the run's settlement worker answers.
    page.get_by_text(re.compile(r"settler@")).first.wait_for()
    docs_screenshot(page, "console-platform")
