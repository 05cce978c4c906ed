"""POST /transactions/transfer writes its intent, claims its key and audits it in one statement:
what it writes, whom it refuses and how, and that it keeps the rules of the ORM path P2P uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ledger.errors import DomainError
from ledger.identity import load_actor
from ledger.integrity.audit import Origin
from ledger.intents import transfers
from ledger.intents.transfers import TransferRequest
from models.db import session_factory
from tests.client import ApiClient, User
from tests.database import Database

# Every field of the API's transaction body that an audit row's `after` carries too.
AUDITED_FIELDS = (
    "id",
    "type",
    "status",
    "failure_reason",
    "amount",
    "currency",
    "source_wallet_id",
    "destination_wallet_id",
    "organization_id",
    "description",
    "metadata",
    "request_id",
    "created_at",
    "completed_at",
)


def _accepted_transfers() -> float:
    return REGISTRY.get_sample_value("vaultcraft_intents_accepted_total", {"type": "TRANSFER"}) or 0.0


def _post(api: ApiClient, user: User, body: dict[str, Any], *, key: str | None = None, request_id: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    if request_id:
        headers["X-Request-ID"] = request_id
    return api.post("/transactions/transfer", user, headers=headers, json=body)


def _intake(db: Any, *users: User) -> tuple[int, ...]:
    """What accepting a transfer writes, in these users' organisations: intents, keys, audit rows.
    (Not every row: the worker settling earlier tests' transfers writes rows of its own meanwhile.)"""
    organizations = sorted({user.organization_id for user in users})
    in_organizations = "organization_id = ANY(CAST(:organizations AS uuid[]))"
    return tuple(
        db.scalar(f"SELECT count(*) FROM {table} WHERE {condition} AND {in_organizations}", organizations=organizations)
        for table, condition in (
            ("transactions", "type = 'TRANSFER'"),
            ("idempotency_keys", "true"),
            ("audit_logs", "action = 'transfer.created'"),
        )
    )


def _body(source: str, destination: str, amount: int = 5, **extra: Any) -> dict[str, Any]:
    return {"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount, **extra}


def _as_accepted(transaction: dict[str, Any]) -> dict[str, Any]:
    """The transaction without what settling it changes (another test's drain may settle it)."""
    return {k: v for k, v in transaction.items() if k not in ("status", "failure_reason", "completed_at")}


def test_an_accepted_transfer_carries_its_request_id_and_one_audit_row(api, db, unpublished):
    unpublished.start()  # stays PENDING, so the body can be compared with a later read
    owner = api.signup()
    source, destination = api.create_wallet(owner), api.create_wallet(owner)
    request_id = f"intake-{uuid.uuid4().hex[:12]}"
    before = _accepted_transfers()

    body = _body(source, destination, 1_050, currency="INR", description="rent", metadata={"order": [1, "a"]})
    response = _post(api, owner, body, key=f"k-{request_id}", request_id=request_id)

    assert response.status_code == 202, response.json
    intent = response.json
    assert response.headers["Location"] == f"/api/v1/transactions/{intent['id']}"
    assert response.headers["X-Request-ID"] == request_id
    assert _as_accepted(api.get(f"/transactions/{intent['id']}", owner).json) == _as_accepted(intent)
    assert (intent["status"], intent["type"], intent["request_id"]) == ("PENDING", "TRANSFER", request_id)
    assert (intent["created_by"], intent["organization_id"]) == (owner.id, owner.organization_id)
    assert intent["metadata"] == {"order": [1, "a"]} and intent["idempotency_key"] == f"k-{request_id}"
    created_at = db.scalar("SELECT created_at FROM transactions WHERE id = :id", id=intent["id"])
    assert intent["created_at"] == created_at.isoformat()
    assert unpublished.ids == [intent["id"]]
    assert _accepted_transfers() == before + 1

    rows = db.rows("SELECT * FROM audit_logs WHERE request_id = :request_id", request_id=request_id)
    assert len(rows) == 1
    row = rows[0]._mapping
    assert (row["action"], row["target_type"], row["target_id"]) == ("transfer.created", "transaction", intent["id"])
    assert (str(row["actor_id"]), str(row["organization_id"])) == (owner.id, owner.organization_id)
    assert (row["actor_label"], row["before"], row["source_address"]) == (None, None, "127.0.0.1")
    assert row["after"] == {field: intent[field] for field in AUDITED_FIELDS}


REFUSALS = {
    "same wallet": (422, "SAME_WALLET"),
    "source unknown": (404, "WALLET_NOT_FOUND"),
    "source of another organisation": (404, "WALLET_NOT_FOUND"),
    "source a member may not see": (404, "WALLET_NOT_FOUND"),
    "source a member only views": (403, "NOT_WALLET_DEBITOR"),
    "source an admin sees but does not own": (403, "NOT_WALLET_DEBITOR"),
    "destination unknown": (404, "DESTINATION_WALLET_NOT_FOUND"),
    "source a member views, destination unknown": (403, "NOT_WALLET_DEBITOR"),
    "source unseen, destination unknown": (404, "WALLET_NOT_FOUND"),
    "source the owner's treasury": (422, "SYSTEM_WALLET"),
    "source a treasury a member contributes to": (422, "SYSTEM_WALLET"),
    "source an admin's view of the treasury": (403, "NOT_WALLET_DEBITOR"),
    "destination a clearing wallet of another organisation": (422, "SYSTEM_WALLET"),
    "destination the own treasury": (422, "SYSTEM_WALLET"),
    "source the treasury, destination unknown": (404, "DESTINATION_WALLET_NOT_FOUND"),
}
ACCEPTED = (
    "own wallets",
    "source a member contributes to",
    "destination of another organisation",
)


class Tenancy:
    """Two organisations, and every way a caller can stand towards a source wallet."""

    def __init__(self, api: ApiClient) -> None:
        self.owner, self.stranger = api.signup(), api.signup()
        self.member, self.admin = api.add_user(self.owner, "MEMBER"), api.add_user(self.owner, "ADMIN")
        self.own, self.other_own = api.create_wallet(self.owner), api.create_wallet(self.owner)
        self.viewed, self.contributed = api.create_wallet(self.owner), api.create_wallet(self.owner)
        self.foreign = api.create_wallet(self.stranger)
        for wallet, role in ((self.viewed, "VIEWER"), (self.contributed, "CONTRIBUTOR")):
            grant = api.post(f"/wallets/{wallet}/members", self.owner, json={"user_id": self.member.id, "role": role})
            assert grant.status_code == 201, grant.json
        self.treasury = api.create_wallet(self.owner, "SYSTEM", name="treasury")
        self.foreign_clearing = api.create_wallet(self.stranger, "SYSTEM", name="clearing")
        # A grant made before SYSTEM wallets refused members: the row alone must not let money out.
        Database().execute(
            "INSERT INTO wallet_members (id, wallet_id, user_id, role, granted_by)"
            " VALUES (gen_random_uuid(), :wallet, :user, 'CONTRIBUTOR', :owner)",
            wallet=self.treasury,
            user=self.member.id,
            owner=self.owner.id,
        )

    def case(self, name: str) -> tuple[User, str, str]:
        unknown = str(uuid.uuid4())
        return {
            "own wallets": (self.owner, self.own, self.other_own),
            "source a member contributes to": (self.member, self.contributed, self.own),
            "destination of another organisation": (self.owner, self.own, self.foreign),
            "same wallet": (self.owner, self.own, self.own),
            "source unknown": (self.owner, unknown, self.own),
            "source of another organisation": (self.owner, self.foreign, self.own),
            "source a member may not see": (self.member, self.own, self.other_own),
            "source a member only views": (self.member, self.viewed, self.own),
            "source an admin sees but does not own": (self.admin, self.own, self.other_own),
            "destination unknown": (self.owner, self.own, unknown),
            "source a member views, destination unknown": (self.member, self.viewed, unknown),
            "source unseen, destination unknown": (self.member, self.own, unknown),
            "source the owner's treasury": (self.owner, self.treasury, self.own),
            "source a treasury a member contributes to": (self.member, self.treasury, self.own),
            "source an admin's view of the treasury": (self.admin, self.treasury, self.own),
            "destination a clearing wallet of another organisation": (self.owner, self.own, self.foreign_clearing),
            "destination the own treasury": (self.owner, self.own, self.treasury),
            "source the treasury, destination unknown": (self.owner, self.treasury, unknown),
        }[name]


@pytest.fixture(scope="module")
def tenancy(app, worker) -> Tenancy:
    return Tenancy(ApiClient(app))


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_refused_transfer_says_why_and_writes_nothing(api, db, tenancy, name):
    user, source, destination = tenancy.case(name)
    key = f"refused-{uuid.uuid4().hex[:12]}"
    before = _intake(db, tenancy.owner, tenancy.stranger)

    response = _post(api, user, _body(source, destination), key=key)

    assert (response.status_code, response.json["error"]["code"]) == REFUSALS[name]
    assert _intake(db, tenancy.owner, tenancy.stranger) == before
    # The key was not kept: once allowed, the same key is a new request.
    assert _post(api, tenancy.owner, _body(tenancy.own, tenancy.other_own), key=key).status_code == 202


@pytest.mark.parametrize("name", ACCEPTED)
def test_an_allowed_transfer_is_accepted(api, tenancy, name):
    user, source, destination = tenancy.case(name)
    response = _post(api, user, _body(source, destination))
    assert response.status_code == 202, response.json
    assert (response.json["created_by"], response.json["source_wallet_id"]) == (user.id, source)


def test_a_key_replays_its_transfer_and_refuses_any_other_request(api, db, tenancy, unpublished):
    unpublished.start()
    owner, member = tenancy.owner, tenancy.member
    key = f"replay-{uuid.uuid4().hex[:12]}"
    body = _body(tenancy.contributed, tenancy.own, 7)
    first = _post(api, member, body, key=key)
    assert first.status_code == 202
    audited = db.scalar("SELECT count(*) FROM audit_logs WHERE target_id = :id", id=first.json["id"])
    counts, accepted = _intake(db, owner), _accepted_transfers()

    replay = _post(api, member, body, key=key)
    assert (replay.status_code, _as_accepted(replay.json)) == (200, _as_accepted(first.json))
    assert replay.headers["Location"] == first.headers["Location"]
    # The key is the organisation's: another member's same request replays it too.
    assert _post(api, owner, body, key=key).json["id"] == first.json["id"]
    # The key comes first: a request it names is replayed even where it would now be refused, and
    # any other request with it is refused as a reused key, whatever else is wrong with it.
    assert _post(api, tenancy.admin, body, key=key).status_code == 200
    for other in (_body(tenancy.contributed, tenancy.own, 8), _body(tenancy.own, tenancy.own, 7)):
        reused = _post(api, member, other, key=key)
        assert (reused.status_code, reused.json["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert _intake(db, owner) == counts and _accepted_transfers() == accepted
    assert db.scalar("SELECT count(*) FROM audit_logs WHERE target_id = :id", id=first.json["id"]) == audited == 1


# --- the API's statement and the ORM path (P2P settles, the seed `internal` move) agree --------


def _outcome(attempt: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        accepted = attempt()
    except DomainError as error:
        return ("refused", type(error).__name__, error.code, error.message)
    kept = accepted.transaction
    return ("created" if accepted.created else "replayed", kept.id if not accepted.created else None)


@pytest.fixture
def rolled_back() -> Iterator[Callable[[Callable[[Any], Any]], tuple[Any, ...]]]:
    """Run one attempt in a transaction of its own that is rolled back, and say how it ended."""

    def run(attempt: Callable[[Any], Any]) -> tuple[Any, ...]:
        with session_factory()() as session:
            try:
                return _outcome(lambda: attempt(session))
            finally:
                session.rollback()

    yield run


def _first_use(user: User, request: TransferRequest, key: str | None) -> None:
    try:
        with session_factory().begin() as session:
            transfers.accept_transfer(session, uuid.UUID(user.id), request, idempotency_key=key, origin=Origin())
    except DomainError:
        pass


@pytest.mark.parametrize("name", sorted([*REFUSALS, *ACCEPTED]))
@pytest.mark.parametrize("key_state", ["no key", "new key", "key of this request", "key of another request"])
def test_the_statement_keeps_the_rules_of_the_orm_path(api, tenancy, rolled_back, name, key_state):
    user, source, destination = tenancy.case(name)
    request = TransferRequest(uuid.UUID(source), uuid.UUID(destination), 5, "INR")
    key = None if key_state == "no key" else f"paths-{uuid.uuid4().hex[:12]}"
    if key_state == "key of this request":
        _first_use(user, request, key)  # refused, it keeps nothing: then the key is still new
    elif key_state == "key of another request":
        _first_use(tenancy.owner, TransferRequest(uuid.UUID(tenancy.own), uuid.UUID(tenancy.other_own), 9, "INR"), key)
    user_id = uuid.UUID(user.id)

    def orm_path(session: Any) -> Any:
        return transfers.submit_transfer(session, load_actor(session, user_id), request, idempotency_key=key)

    def statement(session: Any) -> Any:
        return transfers.accept_transfer(session, user_id, request, idempotency_key=key, origin=Origin())

    assert rolled_back(statement) == rolled_back(orm_path)


def test_a_user_who_no_longer_exists_is_refused_as_an_invalid_token(rolled_back, tenancy):
    request = TransferRequest(uuid.UUID(tenancy.own), uuid.UUID(tenancy.other_own), 5, "INR")
    for key in (None, "gone"):
        outcome = rolled_back(
            lambda session, key=key: transfers.accept_transfer(
                session, uuid.uuid4(), request, idempotency_key=key, origin=Origin()
            )
        )
        assert outcome[:3] == ("refused", "Unauthenticated", "INVALID_TOKEN")
