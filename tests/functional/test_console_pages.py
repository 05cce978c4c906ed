"""Console pages under the API's rules: every page answers a member and an admin with their rows
(`data-id`), another organisation's object (or an unknown or malformed id) is a 404 page, the
platform page is for operators, the review queue obeys four eyes, and no input makes a 500."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.client import ApiClient, User
from tests.console import Console, data_ids, signed_in
from tests.functional.test_review import json_of, set_rules, wait_settled


@dataclass
class World:
    owner: User
    admin: User
    member: User
    stranger: User
    operator: User
    ids: dict[str, str]  # a path argument's name → an object of the owner's organisation
    member_wallet: str
    owner_wallet: str
    transfer: str


@pytest.fixture(scope="module")
def world(app, worker) -> Iterator[World]:
    # These tests sign the same users in many times from one address; the limits have their own tests.
    saved = {key: app.config[key] for key in ("LOGIN_LIMIT_PER_ACCOUNT_ADDRESS", "LOGIN_LIMIT_PER_ACCOUNT")}
    app.config.update(dict.fromkeys(saved, "100000 per minute"))
    yield _world(app)
    app.config.update(saved)


def _world(app) -> World:
    api = ApiClient(app)
    owner, other = api.signup(), api.signup()
    admin, member = api.add_user(owner, "ADMIN"), api.add_user(owner, "MEMBER")
    stranger, operator = api.signup(), api.operator()
    owner_wallet = api.funded_wallet(owner, 100_000)
    member_wallet = api.create_wallet(member)
    transfer = json_of(api.transfer(owner, owner_wallet, member_wallet, 2_500, key="order-1234"))["id"]
    assert api.wait_final(owner, transfer)["status"] == "COMPLETED"
    crossing = json_of(api.transfer(owner, owner_wallet, api.create_wallet(other), 700))["id"]
    assert api.wait_final(owner, crossing)["status"] == "COMPLETED"
    batch = api.run_settlement(operator)["id"]
    run = json_of(api.post("/reconciliation/run", owner, json={"mode": "FULL"}))["id"]
    webhook = json_of(
        api.post("/webhooks", owner, json={"url": "http://127.0.0.1:9/hook", "event_types": ["transaction.*"]})
    )["id"]
    ids = {
        "wallet_id": owner_wallet,
        "transaction_id": transfer,
        "batch_id": batch,
        "run_id": run,
        "webhook_id": webhook,
    }
    return World(owner, admin, member, stranger, operator, ids, member_wallet, owner_wallet, transfer)


LIST_PAGES = [
    "/console/",
    "/console/wallets",
    "/console/transactions",
    "/console/holds",
    "/console/p2p",
    "/console/settlements",
    "/console/reconciliation",
    "/console/audit",
    "/console/webhooks",
    "/console/reviews",
]


def object_rules(app) -> list[Any]:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/console/")
        and rule.arguments
        and "GET" in rule.methods
        and rule.endpoint != "console.static"
    ]


def path_for(rule: Any, value: str) -> str:
    return re.sub(r"<[^>]+>", value, rule.rule)


@pytest.mark.parametrize("path", LIST_PAGES)
@pytest.mark.parametrize("who", ["owner", "member"])
def test_every_page_answers_members_and_admins(app, world, path, who):
    response = signed_in(app, getattr(world, who)).get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"


def test_lists_carry_their_objects_ids(app, world):
    console = signed_in(app, world.owner)
    assert {world.owner_wallet, world.member_wallet} <= set(data_ids(console.get("/console/wallets")))
    assert world.transfer in data_ids(console.get("/console/transactions"))
    assert world.ids["webhook_id"] in data_ids(console.get("/console/webhooks"))
    assert world.ids["run_id"] in data_ids(console.get("/console/reconciliation"))
    assert world.ids["batch_id"] in data_ids(console.get("/console/settlements"))
    assert data_ids(console.get("/console/audit"))
    detail = console.get(f"/console/transactions/{world.transfer}")
    assert len(data_ids(detail)) >= 2  # its entries (and its events)


def test_a_member_sees_what_the_api_shows_a_member(app, world):
    api = ApiClient(app)
    console = signed_in(app, world.member)
    api_wallets = {w["id"] for w in json_of(api.get("/wallets/", world.member))["items"]}
    api_transactions = {t["id"] for t in json_of(api.get("/transactions/", world.member))["items"]}
    assert set(data_ids(console.get("/console/wallets"))) == api_wallets == {world.member_wallet}
    assert set(data_ids(console.get("/console/transactions"))) == api_transactions
    assert console.get(f"/console/wallets/{world.owner_wallet}").status_code == 404
    assert console.get(f"/console/wallets/{world.member_wallet}").status_code == 200
    # Pages the API keeps from a member say so, with no rows.
    for path in ("/console/audit", "/console/webhooks", "/console/settlements", "/console/reconciliation"):
        page = console.get(path)
        assert page.status_code == 200 and data_ids(page) == [] and "Not for your role" in page.get_data(as_text=True)


def test_the_matrix_covers_every_object_page(app, world):
    arguments = {argument for rule in object_rules(app) for argument in rule.arguments}
    assert arguments <= set(world.ids), f"give the test an object for {arguments - set(world.ids)}"


@pytest.mark.parametrize("case", ["own", "another organisation", "unknown", "malformed"])
def test_object_pages_are_404_unless_the_caller_may_see_them(app, world, db, case):
    reader = world.stranger if case == "another organisation" else world.owner
    console = signed_in(app, reader)
    for rule in object_rules(app):
        (argument,) = rule.arguments
        value = {"unknown": str(uuid.uuid4()), "malformed": "not-an-id'%22"}.get(case, world.ids[argument])
        response = console.get(path_for(rule, value))
        expected = 200 if case == "own" else 404
        assert response.status_code == expected, (rule.rule, case, response.get_data(as_text=True)[:300])
        assert response.mimetype == "text/html"
    if case == "another organisation":  # probes are audited as the API audits them
        probes = db.scalar(
            "SELECT COUNT(*) FROM audit_logs WHERE action = 'access.denied' AND actor_id = :id", id=reader.id
        )
        assert probes >= len(object_rules(app))


def test_unknown_console_paths_are_a_404_page_not_json(app, world):
    response = signed_in(app, world.owner).get("/console/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


@pytest.mark.parametrize(
    "query",
    [
        "?cursor=garbage",
        "?cursor=" + "x" * 5000,
        "?status=BOGUS&kind=%00",
        "?range=forever",
        "?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "?q=" + str(uuid.uuid4()),
        "?currency=%FF%FE&type=SYSTEM",
        "?action=%25",
    ],
)
def test_no_query_makes_a_500(app, world, query):
    console = signed_in(app, world.owner)
    for path in LIST_PAGES:
        response = console.get(path + query)
        assert response.status_code in (200, 302, 400, 404), (path, query, response.status_code)
        assert "<script>alert(1)" not in response.get_data(as_text=True)


def test_search_finds_by_id_and_by_reference(app, world):
    console = signed_in(app, world.owner)
    by_id = console.get(f"/console/transactions?q={world.transfer}")
    assert by_id.status_code == 302 and by_id.location.endswith(f"/console/transactions/{world.transfer}")
    assert data_ids(console.get("/console/transactions?q=order-1234")) == [world.transfer]


def test_overview_charts_carry_their_data(app, world):
    page = signed_in(app, world.owner).get("/console/").get_data(as_text=True)
    charts = {
        name: json.loads(html.unescape(points))
        for name, points in re.findall(r"data-chart=\"([^\"]+)\" data-points='([^']*)'", page)
    }
    assert set(charts) == {"volume", "success-rate", "settle-latency"}
    volume = charts["volume"]
    assert volume["x"] and [s["label"] for s in volume["series"]] == ["INR"]
    assert sum(v for v in volume["series"][0]["values"] if v) >= 1000.0 + 25.0 + 7.0  # the deposit and two sends
    assert all(v is None or 0 <= v <= 100 for v in charts["success-rate"]["series"][0]["values"])


def test_wallet_page_charts_its_balance(app, world):
    page = signed_in(app, world.owner).get(f"/console/wallets/{world.owner_wallet}").get_data(as_text=True)
    (points,) = re.findall(r"data-chart=\"wallet-balance\" data-points='([^']*)'", page)
    chart = json.loads(html.unescape(points))
    # 1,000.00 deposited, then 25.00 and 7.00 sent: the balance after each entry, oldest first.
    assert chart["series"][0]["values"] == [1000.0, 975.0, 968.0] and len(chart["x"]) == 3
    assert "968.00 INR" in page


def test_platform_page_is_for_operators_only(app, world):
    for user in (world.owner, world.member):
        console = signed_in(app, user)
        assert console.get("/console/platform").status_code == 403
        assert console.get("/console/platform/workers").status_code == 403
        assert "/console/platform" not in console.get("/console/").get_data(as_text=True)
    console = signed_in(app, world.operator)
    page = console.get("/console/platform")
    assert page.status_code == 200
    assert world.owner.organization_id in data_ids(page)
    assert 'data-chart="platform-volume"' in page.get_data(as_text=True)
    workers = console.get("/console/platform/workers")
    assert workers.status_code == 200 and any(name.startswith("settler@") for name in data_ids(workers))


def test_review_queue_obeys_four_eyes(app, world):
    api = ApiClient(app)
    owner = api.signup()
    admin = api.add_user(owner, "ADMIN")
    source, destination = api.funded_wallet(owner, 10_000), api.create_wallet(owner)
    set_rules(api, owner, review_amount_over=500)
    stopped = wait_settled(api, owner, json_of(api.transfer(owner, source, destination, 900))["id"])
    assert stopped["status"] == "IN_REVIEW"

    creator = signed_in(app, owner)
    queue = creator.get("/console/reviews")
    assert stopped["id"] in data_ids(queue)
    row = queue.get_data(as_text=True)
    assert 'name="approve"' in row and 'name="reject"' in row
    refused = creator.post(f"/console/reviews/{stopped['id']}", {"approve": "1"})
    assert refused.status_code == 403 and "other than its creator" in refused.get_data(as_text=True)
    assert json_of(api.get(f"/transactions/{stopped['id']}", owner))["status"] == "IN_REVIEW"

    reviewer = signed_in(app, admin)
    reviewer.get("/console/reviews")
    approved = reviewer.post(f"/console/reviews/{stopped['id']}", {"approve": "1", "note": "known customer"})
    assert approved.status_code == 303
    assert api.wait_final(owner, stopped["id"])["status"] == "COMPLETED"
    assert stopped["id"] not in data_ids(reviewer.get("/console/reviews"))


def test_a_member_cannot_decide_a_review(app, world):
    console = signed_in(app, world.member)
    console.get("/console/reviews")
    response = console.post(f"/console/reviews/{world.transfer}", {"reject": "1"})
    assert response.status_code in (403, 404)


def test_console_pages_load_nothing_from_outside(app, world):
    console: Console = signed_in(app, world.owner)
    response = console.get("/console/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert not re.search(r"(src|href)=\"https?://", response.get_data(as_text=True))
    assert console.get("/console/static/vendor/uPlot.iife.min.js").status_code == 200
