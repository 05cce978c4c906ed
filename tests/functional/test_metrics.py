"""/metrics: per-route requests and latency, intents, settlements, queue depth, outbox lag, reconciliation;
aggregated across web and Celery prefork processes; JSON logs whose request id follows an intent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from ops.processes import free_loopback_port
from tests import environment
from tests.conftest import stop_worker

STARTUP_SECONDS_MAX = 30


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def test_metrics_in_one_process(api):
    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    client = api.app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    response = api.transfer(owner, source, destination, 10)
    assert response.status_code == 202
    api.wait_final(owner, response.json["id"])
    after = client.get("/metrics").get_data(as_text=True)
    route = {"method": "POST", "route": "/api/v1/transactions/transfer"}
    assert sample(after, "vaultcraft_http_requests_total", **route, status="202") == (
        sample(before, "vaultcraft_http_requests_total", **route, status="202") + 1
    )
    assert sample(after, "vaultcraft_http_request_duration_seconds_count", **route) >= 1
    assert sample(after, "vaultcraft_intents_accepted_total", type="TRANSFER") == (
        sample(before, "vaultcraft_intents_accepted_total", type="TRANSFER") + 1
    )
    assert 'vaultcraft_queue_depth{queue="settlement"}' in after
    assert "vaultcraft_outbox_backlog_events" in after and "vaultcraft_outbox_lag_seconds" in after
    assert client.get("/metrics").content_type.startswith("text/plain")


def _wait_http(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture
def stack(tmp_path):
    """The web (2 processes) and a prefork Celery worker (2 processes) sharing one metrics directory,
    on a Redis database of their own so no other worker takes their tasks."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    redis_url = environment._claim_redis_database(os.environ["REDIS_URL"], uuid.uuid4().hex[:10])
    port = free_loopback_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WEB_PORT": str(port),
        "WEB_PROCESSES": "2",
        "PYTHONUNBUFFERED": "1",
    }
    worker_log = open(tmp_path / "worker.log", "w+b")  # noqa: SIM115 (closed below)
    web = subprocess.Popen(
        [sys.executable, "-m", "web.serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    old_broker = os.environ["REDIS_URL"]
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", web)
        worker = _start_worker_on(redis_url, env, worker_log)
        yield f"http://127.0.0.1:{port}", tmp_path / "worker.log"
    finally:
        os.environ["REDIS_URL"] = old_broker
        if worker is not None:
            stop_worker(worker)
        web.terminate()
        web.wait(timeout=20)
        worker_log.close()
        import redis

        redis.Redis.from_url(redis_url).flushdb()


def _start_worker_on(redis_url: str, env: dict[str, str], log) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "celery", "--app", "workers.app", "worker", "--loglevel", "INFO",
        "--concurrency", "2", "--pool", "prefork", "--queues", "settlement,maintenance",
        "--hostname", f"metrics-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while time.monotonic() < deadline:
        log.flush()
        if b"ready" in open(log.name, "rb").read():  # noqa: SIM115
            return process
        if process.poll() is not None:
            raise RuntimeError("metrics worker exited")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("metrics worker did not start")


def test_metrics_aggregate_every_process_and_the_request_id_follows_the_intent(stack):
    base, worker_log = stack
    http = requests.Session()

    def call(method: str, path: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return http.request(method, f"{base}/api/v1{path}", headers=headers, timeout=10, **kwargs)

    email = f"metrics-{uuid.uuid4().hex[:8]}@example.com"
    signup = call(
        "POST",
        "/auth/signup",
        json={"email": email, "password": "correct horse", "full_name": "M", "organization_name": "M"},
    )
    token = signup.json()["access_token"]
    source = call("POST", "/wallets/", token, json={"type": "PRIMARY", "currency": "INR"}).json()["id"]
    destination = call("POST", "/wallets/", token, json={"type": "PRIMARY", "currency": "INR"}).json()["id"]
    deposit = call("POST", f"/wallets/{source}/deposit", token, json={"amount": 1_000}).json()
    assert call("GET", f"/transactions/{deposit['id']}?wait=20", token).json()["status"] == "COMPLETED"
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    transfer = call(
        "POST", "/transactions/transfer", token, headers={"X-Request-ID": request_id},
        json={"source_wallet_id": source, "destination_wallet_id": destination, "amount": 10, "currency": "INR"},
    )  # fmt: skip
    assert transfer.status_code == 202 and transfer.headers["X-Request-ID"] == request_id
    assert call("GET", f"/transactions/{transfer.json()['id']}?wait=20", token).json()["status"] == "COMPLETED"
    requests_made = 20
    for _ in range(requests_made):
        assert call("GET", "/auth/me", token).status_code == 200

    text = requests.get(f"{base}/metrics", timeout=10).text
    # Both web processes answered some of the 20 calls; the sum is exact whichever did.
    assert sample(text, "vaultcraft_http_requests_total", route="/api/v1/auth/me", status="200") == requests_made
    assert sample(text, "vaultcraft_intents_accepted_total", type="TRANSFER") == 1
    assert sample(text, "vaultcraft_intents_accepted_total", type="DEPOSIT") == 1
    # Settlement happened in Celery pool processes, and /metrics on the web app reports it.
    assert sample(text, "vaultcraft_transactions_settled_total", type="TRANSFER", status="COMPLETED") == 1
    assert sample(text, "vaultcraft_transaction_accepted_to_final_seconds_count", status="COMPLETED") == 2
    assert sample(text, "vaultcraft_queue_depth", queue="settlement") >= 0
    # Money moved, in minor units by currency, counted where it settled (the worker's processes).
    assert sample(text, "vaultcraft_settled_amount_minor_units_total", type="TRANSFER", currency="INR") == 10
    assert sample(text, "vaultcraft_settled_amount_minor_units_total", type="DEPOSIT", currency="INR") == 1_000
    # The stack's one worker heartbeats into the stack's own Redis database, which the web reads.
    assert sample(text, "vaultcraft_settlement_workers_up") == 1
    assert 0 <= sample(text, "vaultcraft_settlement_worker_last_seen_seconds") < 6

    # The worker's JSON log line for the settled transfer carries the API request's id.
    lines = [json.loads(line) for line in worker_log.read_bytes().splitlines() if line.startswith(b"{")]
    settled = [line for line in lines if line.get("transaction_id") == transfer.json()["id"]]
    assert settled and settled[0]["request_id"] == request_id and settled[0]["status"] == "COMPLETED"
    assert settled[0]["service"] == "worker" and settled[0]["level"] == "INFO"


def test_invented_http_methods_share_one_label(api):
    """A method nobody defined must not mint series on the public /metrics: it counts as `other`."""
    client = api.app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    invented = f"RND{uuid.uuid4().hex[:6].upper()}"
    for _ in range(2):
        client.open("/health", method=invented)
    assert client.open("/health", method="PATCH").status_code == 405
    after = client.get("/metrics").get_data(as_text=True)
    assert invented not in after
    labels = {"route": "<unmatched>", "status": "405"}  # a 405 matched no rule
    assert sample(after, "vaultcraft_http_requests_total", method="other", **labels) == (
        sample(before, "vaultcraft_http_requests_total", method="other", **labels) + 2
    )
    assert sample(after, "vaultcraft_http_requests_total", method="PATCH", **labels) == (
        sample(before, "vaultcraft_http_requests_total", method="PATCH", **labels) + 1
    )


def test_oldest_pending_intent_age_leaves_parked_ones_out(api, unpublished, db):
    """The age behind the "oldest PENDING" alert: an intent left waiting shows, a parked one does not
    (it has an alert of its own and would otherwise hold the age up for as long as it is parked)."""
    from tasks.settlement import settle_soon

    owner = api.signup()
    source = api.funded_wallet(owner, 1_000)
    destination = api.create_wallet(owner)
    client = api.app.test_client()
    unpublished.start()
    response = api.transfer(owner, source, destination, 10)
    assert response.status_code == 202
    transaction_id = response.json["id"]
    hour = 3_600
    try:
        db.execute(
            "UPDATE transactions SET created_at = now() - make_interval(secs => :age) WHERE id = :id",
            age=hour + 60,
            id=transaction_id,
        )
        text = client.get("/metrics").get_data(as_text=True)
        assert sample(text, "vaultcraft_oldest_pending_intent_seconds") >= hour + 60
        assert sample(text, "vaultcraft_pending_intents") >= 1

        db.execute("UPDATE transactions SET parked_at = now() WHERE id = :id", id=transaction_id)
        text = client.get("/metrics").get_data(as_text=True)
        assert sample(text, "vaultcraft_oldest_pending_intent_seconds") < hour
        assert sample(text, "vaultcraft_parked_intents") >= 1
        assert sample(text, "vaultcraft_pending_intents") >= 1  # parked intents are still PENDING
    finally:  # settle it, so no other test meets a parked or hour-old intent
        db.execute("UPDATE transactions SET parked_at = NULL, created_at = now() WHERE id = :id", id=transaction_id)
        settle_soon([uuid.UUID(transaction_id)])
    assert api.wait_final(owner, transaction_id)["status"] == "COMPLETED"


def test_settlement_workers_up_follows_the_heartbeats(api):
    """With the suite's worker running, /metrics says at least one settlement worker is up, and when one
    was last heard from."""
    text = api.app.test_client().get("/metrics").get_data(as_text=True)
    assert sample(text, "vaultcraft_settlement_workers_up") >= 1
    assert 0 <= sample(text, "vaultcraft_settlement_worker_last_seen_seconds") < 6
