"""Signed webhooks against a real receiver on loopback, a real webhooks worker and the real relay.

The run's windows are seconds (tests/conftest.py WEBHOOK_TEST_ENVIRONMENT): 1 s per attempt,
retries 0.2-0.5 s apart, giving up after 6 s, an endpoint disabled after 3 s of failures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook

HUGE_BODY_BYTES = 32 * 1024 * 1024


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    at: float


class Receiver:
    """A threaded HTTP server; what it answers depends on the path's first segment."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.seen: dict[tuple[str, str], int] = {}
        self.huge_bytes_written = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                receiver.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler, body: str) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        kind = handler.path.strip("/").split("/")[0]
        with self.lock:
            key = (handler.path, headers.get("webhook-id", ""))
            self.seen[key] = self.seen.get(key, 0) + 1
            nth = self.seen[key]
            self.received.append(Received(handler.path, headers, body, time.monotonic()))
        if kind == "flaky" and nth <= 2:
            return self._answer(handler, 500)
        if kind == "slow-once" and nth == 1:
            time.sleep(1.5)
        if kind == "dead":
            time.sleep(3)
        if kind == "always-500":
            return self._answer(handler, 500)
        if kind == "redirect":
            return self._answer(handler, 302, {"Location": f"{self.url}/redirected"})
        if kind == "huge":
            return self._huge(handler)
        return self._answer(handler, 200)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | None = None) -> None:
        try:
            handler.send_response(status)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(HUGE_BODY_BYTES))
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(HUGE_BODY_BYTES // len(chunk)):
                handler.wfile.write(chunk)
                self.huge_bytes_written += len(chunk)
        except OSError:
            handler.close_connection = True

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait(self, predicate: Callable[[], Any], seconds: float = 10) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError("the receiver did not get what was expected in time")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def hooks(api, webhook_worker, receiver):
    return Hooks(api, receiver)


class Hooks:
    def __init__(self, api: Any, receiver: Receiver) -> None:
        self.api, self.receiver = api, receiver

    def create(self, user: Any, path: str, event_types: list[str]) -> dict[str, Any]:
        response = self.api.post("/webhooks", user, json={"url": self.receiver.url + path, "event_types": event_types})
        assert response.status_code == 201, response.json
        return response.json

    def deliveries(self, user: Any, endpoint_id: str) -> list[dict[str, Any]]:
        return self.api.get(f"/webhooks/{endpoint_id}/deliveries", user).json["items"]

    def wait_delivery(self, user: Any, endpoint_id: str, status: str, seconds: float = 10) -> dict[str, Any]:
        def final() -> Any:
            return next((d for d in self.deliveries(user, endpoint_id) if d["status"] == status), None)

        return self.receiver.wait(final, seconds)


def _verify(secret: str, received: Received) -> Any:
    return Webhook(secret).verify(received.body, received.headers)


def _unique(name: str) -> str:
    return f"/{name}/{time.monotonic_ns()}"


def test_endpoints_crud_and_the_secret_shown_once(api, hooks):
    owner = api.signup()
    created = hooks.create(owner, _unique("ok"), ["transaction.completed", "hold.*"])
    assert created["secret"].startswith("whsec_") and created["status"] == "ENABLED"
    shown = api.get(f"/webhooks/{created['id']}", owner).json
    assert "secret" not in shown and shown["event_types"] == ["transaction.completed", "hold.*"]
    assert [e["id"] for e in api.get("/webhooks", owner).json["items"]] == [created["id"]]

    patched = api.patch(f"/webhooks/{created['id']}", owner, json={"event_types": ["*"], "status": "DISABLED"})
    assert patched.json["event_types"] == ["*"] and patched.json["status"] == "DISABLED"
    assert api.post(f"/webhooks/{created['id']}/test", owner).status_code == 409

    unknown = api.post("/webhooks", owner, json={"url": hooks.receiver.url, "event_types": ["transaction.done"]})
    assert unknown.status_code == 422 and unknown.json["error"]["code"] == "INVALID_EVENT_TYPES"
    member = api.add_user(owner)
    assert api.get("/webhooks", member).status_code == 403

    assert api.request("DELETE", f"/webhooks/{created['id']}", owner).status_code == 204
    assert api.get(f"/webhooks/{created['id']}", owner).status_code == 404


def test_a_transfer_reaches_subscribed_endpoints_of_both_organisations_only(api, hooks):
    sender, receiver_org, bystander = api.signup(), api.signup(), api.signup()
    subscribed = hooks.create(sender, _unique("ok"), ["transaction.*"])
    unsubscribed = hooks.create(sender, _unique("ok"), ["hold.*"])
    other_side = hooks.create(receiver_org, _unique("ok"), ["transaction.completed"])
    outsider = hooks.create(bystander, _unique("ok"), ["*"])
    source = api.funded_wallet(sender, 10_000)
    destination = api.create_wallet(receiver_org)

    transfer = api.transfer(sender, source, destination, 700).json
    assert api.wait_final(sender, transfer["id"])["status"] == "COMPLETED"

    def event_for(endpoint: dict[str, Any]) -> list[Received]:
        path = endpoint["url"].removeprefix(hooks.receiver.url)
        return [r for r in hooks.receiver.at(path) if transfer["id"] in r.body]

    for endpoint in (subscribed, other_side):
        [delivered] = hooks.receiver.wait(lambda e=endpoint: event_for(e))
        event = _verify(endpoint["secret"], delivered)
        assert event["type"] == "transaction.completed" and event["data"]["id"] == transfer["id"]
        assert delivered.headers["webhook-id"] == event["id"]
        hooks.wait_delivery(receiver_org if endpoint is other_side else sender, endpoint["id"], "SUCCEEDED")
    with pytest.raises(Exception, match="No matching signature"):
        _verify(other_side["secret"], event_for(subscribed)[0])
    time.sleep(0.5)  # what reached the subscribed endpoints has had time to reach the others too
    assert event_for(unsubscribed) == [] and event_for(outsider) == []
    assert hooks.deliveries(bystander, outsider["id"]) == []


def test_retries_after_500s_and_a_timeout_carry_the_same_webhook_id(api, hooks):
    owner = api.signup()
    for kind, attempts in (("flaky", 3), ("slow-once", 2)):
        endpoint = hooks.create(owner, _unique(kind), ["webhook.test"])
        sent = api.post(f"/webhooks/{endpoint['id']}/test", owner)
        assert sent.status_code == 202
        delivery = hooks.wait_delivery(owner, endpoint["id"], "SUCCEEDED")
        path = endpoint["url"].removeprefix(hooks.receiver.url)
        requests = hooks.receiver.at(path)
        assert delivery["attempt"] == attempts == len(requests), kind
        assert {r.headers["webhook-id"] for r in requests} == {delivery["event_id"]}
        for received in requests:
            assert _verify(endpoint["secret"], received)["type"] == "webhook.test"


def test_after_a_rotation_both_secrets_verify(api, hooks):
    owner = api.signup()
    endpoint = hooks.create(owner, _unique("ok"), ["webhook.test"])
    rotated = api.post(f"/webhooks/{endpoint['id']}/rotate-secret", owner).json
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    api.post(f"/webhooks/{endpoint['id']}/test", owner)
    path = endpoint["url"].removeprefix(hooks.receiver.url)
    [received] = hooks.receiver.wait(lambda: hooks.receiver.at(path))
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert _verify(endpoint["secret"], received) == _verify(rotated["secret"], received)


def test_an_endpoint_failing_for_the_whole_window_is_disabled_with_an_event(api, hooks):
    owner = api.signup()
    failing = hooks.create(owner, _unique("always-500"), ["webhook.test"])
    watcher = hooks.create(owner, _unique("ok"), ["webhook.disabled"])
    api.post(f"/webhooks/{failing['id']}/test", owner)

    hooks.receiver.wait(lambda: api.get(f"/webhooks/{failing['id']}", owner).json["status"] == "DISABLED", 10)
    [delivery] = hooks.deliveries(owner, failing["id"])
    assert delivery["status"] == "FAILED" and delivery["attempt"] >= 3
    path = watcher["url"].removeprefix(hooks.receiver.url)
    [received] = hooks.receiver.wait(lambda: hooks.receiver.at(path))
    event = _verify(watcher["secret"], received)
    assert event["type"] == "webhook.disabled" and event["data"]["id"] == failing["id"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://example.com/hook",
    ],
)
def test_private_addresses_and_plain_http_are_refused_at_creation(api, hooks, monkeypatch, url):
    _private_addresses(monkeypatch, allowed=False)
    owner = api.signup()
    response = api.post("/webhooks", owner, json={"url": url, "event_types": ["*"]})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "WEBHOOK_URL_NOT_ALLOWED"


def _private_addresses(monkeypatch: pytest.MonkeyPatch, *, allowed: bool) -> None:
    import tasks.webhooks
    import web.routes.webhooks
    from settings import get_settings

    settings = dataclasses.replace(get_settings(), webhook_allow_private=allowed)
    monkeypatch.setattr(web.routes.webhooks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks.webhooks, "get_settings", lambda: settings)


def test_an_address_refused_at_delivery_fails_the_delivery_and_a_retry_sends_it_again(api, hooks, monkeypatch):
    """Created while private addresses were allowed, attempted once they are not: the address
    actually dialled is checked, nothing is sent, and the delivery ends FAILED at once."""
    import tasks.webhooks
    import web.routes.webhooks

    owner = api.signup()
    endpoint = hooks.create(owner, _unique("ok"), ["webhook.test"])
    monkeypatch.setattr(web.routes.webhooks, "enqueue_noted", lambda session: 0)  # the message is lost
    delivery = api.post(f"/webhooks/{endpoint['id']}/test", owner).json

    _private_addresses(monkeypatch, allowed=False)
    assert tasks.webhooks.deliver_webhook(delivery["id"]) == "failed"
    [failed] = hooks.deliveries(owner, endpoint["id"])
    assert failed["status"] == "FAILED" and failed["error"].startswith("BLOCKED_ADDRESS")
    assert hooks.receiver.at(endpoint["url"].removeprefix(hooks.receiver.url)) == []

    monkeypatch.undo()
    retried = api.post(f"/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/retry", owner)
    assert retried.status_code == 202
    done = hooks.wait_delivery(owner, endpoint["id"], "SUCCEEDED")
    assert (done["id"], done["event_id"], done["attempt"]) == (delivery["id"], delivery["event_id"], 2)


def test_a_delivery_whose_message_was_lost_is_swept_up(api, hooks, monkeypatch):
    import tasks.webhooks
    import web.routes.webhooks

    owner = api.signup()
    endpoint = hooks.create(owner, _unique("ok"), ["webhook.test"])
    monkeypatch.setattr(web.routes.webhooks, "enqueue_noted", lambda session: 0)
    delivery = api.post(f"/webhooks/{endpoint['id']}/test", owner).json
    time.sleep(1.2)  # due for longer than VAULTCRAFT_WEBHOOK_SWEEP_STALE_SECONDS
    assert tasks.webhooks.sweep_webhook_deliveries() >= 1
    assert hooks.wait_delivery(owner, endpoint["id"], "SUCCEEDED")["id"] == delivery["id"]


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(api, hooks):
    owner = api.signup()
    endpoint = hooks.create(owner, _unique("redirect"), ["webhook.test"])
    api.post(f"/webhooks/{endpoint['id']}/test", owner)
    retrying = hooks.receiver.wait(
        lambda: [d for d in hooks.deliveries(owner, endpoint["id"]) if d["response_status"] == 302]
    )
    assert retrying[0]["error"] == "HTTP 302" and retrying[0]["status"] in ("PENDING", "FAILED")
    assert hooks.receiver.at("/redirected") == []


def test_a_huge_answer_is_read_no_further_than_64_kb(hooks):
    from notify.client import WebhookClient

    client = WebhookClient(allow_private=True, timeout_seconds=5, response_bytes_max=64 * 1024)
    outcome = client.post(hooks.receiver.url + "/huge", {}, b"{}")
    assert outcome.succeeded and outcome.response_bytes_read == 64 * 1024
    time.sleep(0.5)
    assert hooks.receiver.huge_bytes_written < HUGE_BODY_BYTES  # the client hung up on the rest
    client.close()


def test_a_dead_endpoint_does_not_delay_a_healthy_one(api, hooks):
    """More deliveries to a dead endpoint than the webhooks worker has threads: at most 2 of them
    are in flight at once, so the healthy endpoint's delivery finds a thread at once."""
    owner = api.signup()
    dead = hooks.create(owner, _unique("dead"), ["webhook.test"])
    healthy = hooks.create(owner, _unique("ok"), ["webhook.test"])
    for _ in range(10):
        api.post(f"/webhooks/{dead['id']}/test", owner)
    time.sleep(0.3)  # the dead endpoint's attempts are under way
    started = time.monotonic()
    api.post(f"/webhooks/{healthy['id']}/test", owner)
    path = healthy["url"].removeprefix(hooks.receiver.url)
    [received] = hooks.receiver.wait(lambda: hooks.receiver.at(path), 5)
    assert received.at - started < 1.0  # an attempt at the dead one takes 1 s (its timeout)
    # At most 2 attempts at the dead one went out together; the next ones only once those timed out
    # (1 s later: the receiver, which keeps sleeping, cannot say when the sender gave up).
    dead_at = sorted(r.at for r in hooks.receiver.at(dead["url"].removeprefix(hooks.receiver.url)))
    assert 1 <= len([at for at in dead_at if at - dead_at[0] < 0.8]) <= 2


def test_metrics_show_webhook_gauges(api, hooks):
    text = api.app.test_client().get("/metrics").get_data(as_text=True)
    for name in (
        "vaultcraft_webhook_deliveries_pending",
        "vaultcraft_webhook_endpoints_failing",
        "vaultcraft_webhook_endpoints_disabled",
    ):
        assert f"\n{name} " in text, name
