"""Every statement of settlement touches one organisation's rows, except what crosses organisations
by design: the property that lets the tables be distributed by `organization_id` (docs/scaling.md).

Observed, not inferred from the code: for the test's run, every table gets a row trigger that logs,
for each row a statement inserts, updates or deletes, the statement (transaction id, statement
start, a hash of its text) and the row's organisation (its own `organization_id`; through its
wallet where it has only a `wallet_id`; every organisation an outbox event names; a P2P request's
payee, and its payer as its counterparty). A mixed workload of several organisations then runs
through the real worker: transfers inside organisations and across them, deposits, holds and
captures, bulk, refunds, P2P settles, all queued first so the drain meets them together.

Each database transaction that accepts or settles intents must do so for one organisation (its
home), and each of its statements may touch only that home and the organisations its home's
crossing intents name: a transfer, capture, refund or P2P payment whose sender and receiver are in
two organisations posts both sides and the obligation between the clearing wallets in one
transaction (ledger/clearing/routing.py). A transaction that settles no intent (a void, a monitor)
may touch one organisation and those it has a crossing with. Anything else is listed with its SQL
and fails the test; statements outside money-moving transactions that span organisations must be
on ALLOWED_ELSEWHERE with their reason.

The row trigger sees writes only. Reads that lock rows (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE)
are observed in a drain run in this process: every such statement the engine sends, with the ids
it names and the ids of the rows it returns, is mapped to organisations the same way.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from models.db import get_engine
from tests.client import ApiClient, User, bulk_item

LOG = "org_probe_log"

_INSTALL = f"""
CREATE TABLE {LOG} (
    txid bigint NOT NULL,
    statement_at timestamptz NOT NULL,
    query_md5 text NOT NULL,
    query text NOT NULL,
    table_name text NOT NULL,
    operation text NOT NULL,
    organization_id uuid,
    peers uuid[] NOT NULL,
    own_intent boolean NOT NULL
);
CREATE FUNCTION org_probe() RETURNS trigger LANGUAGE plpgsql AS $probe$
DECLARE
    j jsonb;
    orgs uuid[];
    peers uuid[] := '{{}}';
    own_intent boolean := false;
BEGIN
    IF TG_OP = 'DELETE' THEN j := to_jsonb(OLD); ELSE j := to_jsonb(NEW); END IF;
    IF TG_TABLE_NAME = 'organizations' THEN
        orgs := ARRAY[(j->>'id')::uuid];
    ELSIF TG_TABLE_NAME = 'outbox_events' THEN
        orgs := ARRAY(SELECT jsonb_array_elements_text(j->'organization_ids')::uuid);
    ELSIF TG_TABLE_NAME = 'p2p_requests' THEN
        orgs := ARRAY[(j->>'payee_organization_id')::uuid];
        IF (j->>'payer_organization_id') IS NOT NULL AND j->>'payer_organization_id' <> j->>'payee_organization_id' THEN
            peers := ARRAY[(j->>'payer_organization_id')::uuid];
        END IF;
    ELSIF j ? 'organization_id' THEN
        orgs := ARRAY[(j->>'organization_id')::uuid];
        IF TG_TABLE_NAME = 'transactions' THEN
            peers := ARRAY(
                SELECT DISTINCT w.organization_id FROM wallets w
                 WHERE w.id IN ((j->>'source_wallet_id')::uuid, (j->>'destination_wallet_id')::uuid)
                   AND w.organization_id IS DISTINCT FROM orgs[1]);
            -- An intent this statement accepts, or settles (takes out of PENDING): its organisation
            -- is the database transaction's home.
            own_intent := j->>'type' <> 'CLEARING' AND (
                (TG_OP = 'INSERT' AND j->>'status' = 'PENDING')
                OR (TG_OP = 'UPDATE' AND OLD.status = 'PENDING' AND NEW.status <> 'PENDING'));
        END IF;
    ELSIF j ? 'wallet_id' THEN
        orgs := ARRAY(SELECT organization_id FROM wallets WHERE id = (j->>'wallet_id')::uuid);
    END IF;
    IF orgs IS NULL OR cardinality(orgs) = 0 THEN
        orgs := ARRAY[NULL::uuid];  -- a table with no organisation: global
    END IF;
    INSERT INTO {LOG}
    SELECT txid_current(), statement_timestamp(), md5(current_query()),
           left(regexp_replace(current_query(), '\\s+', ' ', 'g'), 200), TG_TABLE_NAME, TG_OP, o, peers, own_intent
      FROM unnest(orgs) AS o;
    RETURN NULL;
END
$probe$;
DO $install$
DECLARE t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relname NOT IN ('{LOG}', 'alembic_version')
    LOOP
        EXECUTE format('CREATE TRIGGER org_probe AFTER INSERT OR UPDATE OR DELETE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION org_probe()', t);
    END LOOP;
END
$install$;
"""
_UNINSTALL = f"""
DO $uninstall$
DECLARE t text;
BEGIN
    FOR t IN SELECT DISTINCT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
              WHERE g.tgname = 'org_probe' AND NOT c.relispartition
    LOOP
        EXECUTE format('DROP TRIGGER org_probe ON %I', t);
    END LOOP;
END
$uninstall$;
DROP FUNCTION IF EXISTS org_probe();
DROP TABLE IF EXISTS {LOG};
"""

# Tables whose rows only settling money (or accepting an intent) writes: a database transaction that
# wrote one of them is the engine's or an intake's, and its every statement is held to the rule.
MONEY_TABLES = {"transactions", "ledger_entries", "wallets", "holds", "p2p_requests", "balance_monitors"}

# Statements outside those transactions that touch several organisations, each with why that is
# acceptable. A new one fails the test until it is understood and listed here.
ALLOWED_ELSEWHERE = {
    "UPDATE outbox_events SET published_at": (
        "the outbox relay marks a published batch in outbox id order across organisations; distributed,"
        " each shard has its own outbox and relay (docs/scaling.md)"
    ),
}


@dataclass(frozen=True)
class Statement:
    txid: int
    query: str
    tables: frozenset[str]
    organisations: frozenset[uuid.UUID]


@pytest.fixture
def probe(db) -> Iterator[None]:
    db.execute(_UNINSTALL)  # left over by an interrupted run
    db.execute(_INSTALL)
    try:
        yield
    finally:
        db.execute(_UNINSTALL)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Once called, accepted intents are committed but no drain is woken: they wait for the test's."""
    from web.routes import bulk, holds, transactions

    def keep(transaction_ids: Iterable[uuid.UUID]) -> bool:
        return True

    def start() -> None:
        for module in (transactions, holds, bulk):
            monkeypatch.setattr(module, "settle_soon", keep)

    return start


def around_one(organisations: frozenset[uuid.UUID], pairs: set[frozenset[uuid.UUID]]) -> bool:
    """One organisation, or one home and only organisations it has a crossing intent with."""
    if len(organisations) <= 1:
        return True
    return any(all(frozenset((home, other)) in pairs for other in organisations - {home}) for home in organisations)


@dataclass
class Unit:
    """One database transaction: the organisations whose intents it accepted or settled (its home,
    one if the rule holds), each one's counterparties through those intents, and every crossing pair
    its intents and P2P requests name."""

    homes: dict[uuid.UUID, set[uuid.UUID]]
    pairs: set[frozenset[uuid.UUID]]

    def allows(self, organisations: frozenset[uuid.UUID]) -> bool:
        if len(self.homes) == 1:
            [(home, peers)] = self.homes.items()
            return organisations <= {home} | peers
        return not self.homes and around_one(organisations, self.pairs)


def logged_statements(db) -> tuple[list[Statement], dict[int, Unit]]:
    """Each logged statement with the organisations its rows belong to, and each database transaction."""
    rows = db.rows(
        f"""
        SELECT txid, min(query) AS query, array_agg(DISTINCT table_name) AS tables,
               coalesce(array_agg(DISTINCT organization_id) FILTER (WHERE organization_id IS NOT NULL), '{{}}')
               AS organisations
          FROM {LOG}
         GROUP BY txid, statement_at, query_md5
        """
    )
    statements = [Statement(r.txid, r.query, frozenset(r.tables), frozenset(r.organisations)) for r in rows]
    units: dict[int, Unit] = defaultdict(lambda: Unit({}, set()))
    for r in db.rows(
        f"SELECT txid, organization_id, peers, own_intent FROM {LOG}"
        " WHERE table_name IN ('transactions', 'p2p_requests') AND organization_id IS NOT NULL"
    ):
        unit = units[r.txid]
        if r.own_intent:
            unit.homes.setdefault(r.organization_id, set()).update(r.peers)
        unit.pairs |= {frozenset((r.organization_id, peer)) for peer in r.peers}
    return statements, units


def money_txids(statements: Iterable[Statement]) -> set[int]:
    return {s.txid for s in statements if s.tables & MONEY_TABLES}


# --- the workload ---------------------------------------------------------------------------------


@dataclass
class Organisation:
    owner: User
    funded: str
    second: str
    till: str


def hold(api: ApiClient, user: User, source: str, destination: str, amount: int) -> dict[str, Any]:
    response = api.post(
        "/holds", user, json={"source_wallet_id": source, "destination_wallet_id": destination, "amount": amount}
    )
    assert response.status_code == 202, response.json
    found = accepted_body(api.get(f"/holds/{accepted_body(response)['id']}?wait=10", user))
    assert found["status"] == "HELD", found
    return found


def accepted_body(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.json
    return dict(response.json or {})


def accepted(response: Any) -> str:
    assert response.status_code in (200, 201, 202), response.json
    body = response.json
    return str((body.get("transaction") or body)["id"])


@dataclass
class Setup:
    organisations: list[Organisation]
    holds: list[tuple[User, str]]  # (who captures, hold id)
    refundable: list[tuple[User, str]]
    requests: list[tuple[User, str, str]]  # (payer, request id, payer's source wallet)


def set_up(api: ApiClient, count: int = 3) -> Setup:
    """Organisations with funded wallets, HELD holds (inside one and across two), completed
    transfers to refund and open P2P requests: settled as usual, before the queued phase."""
    orgs = []
    for _ in range(count):
        owner = api.signup()
        orgs.append(
            Organisation(
                owner, api.funded_wallet(owner, 1_000_000), api.funded_wallet(owner, 100_000), api.create_wallet(owner)
            )
        )
    setup = Setup(orgs, [], [], [])
    for index, org in enumerate(orgs):
        other = orgs[(index + 1) % count]
        setup.holds.append((org.owner, hold(api, org.owner, org.funded, org.till, 5_000)["id"]))
        setup.holds.append((other.owner, hold(api, org.owner, org.funded, other.till, 5_000)["id"]))
        for destination in (org.second, other.till):  # a refund inside one organisation and across two
            transfer = api.wait_final(org.owner, accepted(api.transfer(org.owner, org.funded, destination, 2_000)))
            assert transfer["status"] == "COMPLETED"
            payer = org.owner if destination == org.second else other.owner
            setup.refundable.append((payer, transfer["id"]))
        request = api.p2p_request(other.owner, org.owner, other.till, 700)
        setup.requests.append((org.owner, request["id"], org.funded))
    return setup


def queue_mixed(api: ApiClient, setup: Setup) -> list[tuple[User, str]]:
    """Intents of every kind from every organisation, accepted while no drain runs."""
    intents: list[tuple[User, str]] = []
    orgs = setup.organisations
    for round_ in range(2):
        for index, org in enumerate(orgs):
            other = orgs[(index + 1) % len(orgs)]
            me = org.owner
            intents.append((me, accepted(api.transfer(me, org.funded, org.second, 100 + round_))))
            intents.append((me, accepted(api.transfer(me, org.second, org.till, 50))))
            intents.append((me, accepted(api.transfer(me, org.funded, other.till, 300))))  # across
            intents.append((me, accepted(api.post(f"/wallets/{org.second}/deposit", me, json={"amount": 900}))))
            batch = api.transfer_batch(
                me,
                [bulk_item(org.funded, org.second, 10 + n) for n in range(4)] + [bulk_item(org.funded, other.till, 7)],
            )
            intents.extend((me, item["transaction"]["id"]) for item in accepted_body(batch)["items"])
            response = api.post(
                "/holds", me, json={"source_wallet_id": org.funded, "destination_wallet_id": org.till, "amount": 40}
            )
            assert response.status_code == 202, response.json
    for captor, hold_id in setup.holds:
        intents.append((captor, accepted(api.post(f"/holds/{hold_id}/capture", captor, json={"amount": 1_000}))))
    for payer, transfer_id in setup.refundable:
        intents.append((payer, accepted(api.post(f"/transactions/{transfer_id}/refund", payer, json={"amount": 500}))))
    for payer, request_id, source in setup.requests:
        intents.append((payer, accepted(api.p2p_settle(payer, request_id, source))))
    return intents


def wait_settled(api: ApiClient, intents: list[tuple[User, str]]) -> None:
    for user, transaction_id in intents:
        final = api.wait_final(user, transaction_id, seconds=10)
        assert final["status"] in ("COMPLETED", "FAILED"), final
        assert final["status"] == "COMPLETED", final  # every intent of the workload is meant to succeed


# --- the tests ------------------------------------------------------------------------------------


def describe(statement: Statement) -> str:
    return f"{sorted(statement.tables)} {len(statement.organisations)} organisations: {statement.query}"


def test_every_settlement_statement_touches_one_organisation(api, db, probe, queued):
    from tasks.settlement import drain_pending

    ours = set()
    setup = set_up(api)
    ours |= {uuid.UUID(o.owner.organization_id) for o in setup.organisations}
    queued()
    intents = queue_mixed(api, setup)
    pending = db.scalar(
        "SELECT count(DISTINCT organization_id) FROM transactions WHERE status = 'PENDING'"
        " AND organization_id = ANY(CAST(:orgs AS uuid[]))",
        orgs=[str(o) for o in ours],
    )
    assert pending == len(ours), "the drain meets every organisation's intents together"
    drain_pending.delay()  # the real worker drains the mixed backlog
    wait_settled(api, intents)
    time.sleep(1.0)  # the relay publishes what the batches wrote

    statements, units = logged_statements(db)
    relevant = [s for s in statements if s.organisations & ours]
    engine = money_txids(relevant)
    assert any("ledger_entries" in s.tables for s in relevant), "the probe saw the engine's writes"
    crossing = [s for s in relevant if s.txid in engine and len(s.organisations) > 1]
    assert crossing, "cross-organisation intents touch both sides: the probe must see them"
    mixed = {t: len(units[t].homes) for t in engine if len(units[t].homes) > 1}
    assert not mixed, (
        f"{len(mixed)} database transactions accepted or settled intents of several organisations"
        f" ({sorted(set(mixed.values()))} organisations); their statements:\n"
        + "\n".join(sorted({describe(s) for s in relevant if s.txid in mixed and len(s.organisations) > 1}))
    )
    broken = [describe(s) for s in relevant if s.txid in engine and not units[s.txid].allows(s.organisations)]
    assert not broken, "statements touching unrelated organisations:\n" + "\n".join(sorted(set(broken)))
    elsewhere = [s for s in relevant if s.txid not in engine and len(s.organisations) > 1]
    unexplained = [describe(s) for s in elsewhere if not any(s.query.startswith(k) for k in ALLOWED_ELSEWHERE)]
    assert not unexplained, "multi-organisation statements with no reason listed:\n" + "\n".join(unexplained)


_LOCKING = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.IGNORECASE)


def _uuids(value: Any) -> Iterator[uuid.UUID]:
    if isinstance(value, uuid.UUID):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _uuids(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _uuids(item)


@dataclass
class LockingRead:
    statement: str
    ids: set[uuid.UUID]


def owners_of(db, ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each id's organisation: an organisation, a wallet, a transaction or a hold."""
    found = db.rows(
        """
        SELECT id, id AS org FROM organizations WHERE id = ANY(CAST(:ids AS uuid[]))
        UNION ALL SELECT id, organization_id FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))
        UNION ALL SELECT id, organization_id FROM transactions WHERE id = ANY(CAST(:ids AS uuid[]))
        UNION ALL SELECT id, organization_id FROM holds WHERE id = ANY(CAST(:ids AS uuid[]))
        """,
        ids=[str(i) for i in ids],
    )
    return {r.id: r.org for r in found}


def parties_of(db, intent_ids: set[uuid.UUID]) -> dict[uuid.UUID, set[uuid.UUID]]:
    """Each intent's organisations: its own, its sender's and its receiver's."""
    rows = db.rows(
        """
        SELECT t.id, t.organization_id AS own, s.organization_id AS sender, d.organization_id AS receiver
          FROM transactions t
          JOIN wallets s ON s.id = t.source_wallet_id
          JOIN wallets d ON d.id = t.destination_wallet_id
         WHERE t.id = ANY(CAST(:ids AS uuid[]))
        """,
        ids=[str(i) for i in intent_ids],
    )
    return {r.id: {r.own, r.sender, r.receiver} for r in rows}


def batches(reads: list[LockingRead]) -> list[list[LockingRead]]:
    """The reads cut at each claim: a batch's claim, then the locks that batch takes."""
    cut: list[list[LockingRead]] = []
    for read in reads:
        if _CLAIM in read.statement or not cut:
            cut.append([])
        cut[-1].append(read)
    return cut


_CLAIM = "WITH t AS MATERIALIZED"


def test_every_locking_read_of_a_drain_names_one_organisation(api, db, queued):
    """A drain in this process, with every statement that locks rows captured with its ids and the
    ids of the rows it returns (the claim names no id: what it locks is what it returns)."""
    from tasks.settlement import drain_backlog

    setup = set_up(api)
    queued()
    intents = queue_mixed(api, setup)
    reads: list[LockingRead] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if _LOCKING.search(statement):
            # A drain's claim lists the organisations it passes over: not rows it locks.
            named = (
                {k: v for k, v in parameters.items() if k != "passed"} if isinstance(parameters, dict) else parameters
            )
            reads.append(LockingRead(statement, set(_uuids(named))))

    def after(conn, cursor, statement, parameters, context, executemany):
        if not _LOCKING.search(statement) or cursor.description is None:
            return
        rows = cursor.fetchall()
        if rows:
            cursor.scroll(0, mode="absolute")  # a client-side cursor: the engine reads the rows again
        reads[-1].ids |= set(_uuids([row[0] for row in rows]))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        drain_backlog(batches_max=50)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    wait_settled(api, intents)

    claims = [b for b in batches(reads) if _CLAIM in b[0].statement and b[0].ids]
    assert claims, "the drain's claims were seen"
    owners = owners_of(db, {i for r in reads for i in r.ids})
    parties = parties_of(db, {i for b in claims for i in b[0].ids})
    mixed, broken = [], []
    for claim, *locks in claims:
        homes = {owners[i] for i in claim.ids}
        if len(homes) > 1:
            mixed.append(f"a claim of {len(claim.ids)} intents of {len(homes)} organisations")
            continue
        [home] = homes
        allowed = {home}.union(*(parties[i] for i in claim.ids))
        for read in locks:
            organisations = {owners[i] for i in read.ids if i in owners}
            if not organisations <= allowed:
                broken.append(f"{len(organisations)} organisations: {' '.join(read.statement.split())[:200]}")
    assert not mixed, "claims across organisations:\n" + "\n".join(mixed)
    assert not broken, "locking reads across unrelated organisations:\n" + "\n".join(broken)


def test_the_rule_itself():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert around_one(frozenset({a}), set())
    assert not around_one(frozenset({a, b}), set())
    assert around_one(frozenset({a, b, c}), {frozenset((a, b)), frozenset((a, c))})  # a pays b and c
    assert not around_one(frozenset({a, b, c}), {frozenset((a, b))})
    # A batch of a's intents, one of which pays b: a and b, never c, even if c pays a elsewhere in it.
    unit = Unit({a: {b}}, {frozenset((a, b)), frozenset((a, c))})
    assert unit.allows(frozenset({a, b})) and not unit.allows(frozenset({a, c}))
    assert not Unit({a: set(), b: set()}, set()).allows(frozenset({a}))  # two homes: never
