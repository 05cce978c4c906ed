"""Webhook rules that need no server: addresses, filters, backoff, signatures, secrets."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from ledger.errors import InvalidRequest
from notify import addresses, endpoints, signing_secrets
from notify.client import CheckedBackend
from notify.deliveries import JITTER, backoff
from notify.signing import signed_headers
from settings import Settings


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    ],
)  # fmt: skip
def test_private_and_special_addresses_are_blocked(address):
    assert addresses.is_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_not(address):
    assert not addresses.is_blocked(ipaddress.ip_address(address))


def test_a_name_resolving_to_loopback_is_refused_when_dialled():
    """The check sits where connections are made, so it holds at delivery whatever held at creation."""
    with pytest.raises(addresses.AddressBlocked):
        CheckedBackend(allow_private=False).connect_tcp("localhost", 9, timeout=1)


def test_filters_match_all_prefix_and_exact():
    assert endpoints.matches("hold.captured", ["*"])
    assert endpoints.matches("hold.captured", ["hold.*"])
    assert endpoints.matches("hold.captured", ["transaction.failed", "hold.captured"])
    assert not endpoints.matches("hold.captured", ["transaction.*", "hold.voided"])
    assert not endpoints.matches("holdings.captured", ["hold.*"])


def test_filters_are_known_types_or_aggregates():
    assert endpoints.validate_event_types(["hold.*", "*", "hold.*", "p2p_request.settled"]) == [
        "hold.*",
        "*",
        "p2p_request.settled",
    ]
    for bad in (["transaction.done"], ["nothing.*"], ["transaction"], ["transaction.*.x"], ["*.completed"]):
        with pytest.raises(InvalidRequest):
            endpoints.validate_event_types(bad)


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    settings = dataclasses.replace(_settings(), webhook_retry_base_seconds=5, webhook_retry_max_seconds=3600)
    for attempts, step in ((1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (40, 3600)):
        delays = {backoff(attempts, settings).total_seconds() for _ in range(20)}
        assert all(step * (1 - JITTER) <= d <= step for d in delays), (attempts, delays)
        assert len(delays) > 1  # jittered


def test_signatures_verify_with_the_standard_webhooks_library_under_every_secret():
    old, new = signing_secrets.new_secret(), signing_secrets.new_secret()
    body = '{"id": "e1", "type": "webhook.test"}'
    headers = signed_headers("e1", body, [new, old], datetime.now(UTC))
    assert headers["webhook-id"] == "e1" and len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(signing_secrets.new_secret()).verify(body, headers)


def test_secrets_are_stored_encrypted_and_decrypt_under_a_rotated_key_list():
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret = signing_secrets.new_secret()
    token = signing_secrets.encrypt(secret, old_key)
    assert secret.encode() not in token and secret.removeprefix("whsec_").encode() not in token
    assert signing_secrets.decrypt(token, f"{new_key},{old_key}") == secret


def test_the_previous_secret_signs_only_within_its_overlap():
    key = Fernet.generate_key().decode()
    now = datetime.now(UTC)
    endpoint = endpoints.WebhookEndpoint(
        secret_encrypted=signing_secrets.encrypt("whsec_bmV3", key),
        previous_secret_encrypted=signing_secrets.encrypt("whsec_b2xk", key),
        previous_secret_expires_at=now + timedelta(seconds=1),
    )
    assert endpoints.current_secrets(endpoint, secrets_key=key, now=now) == ["whsec_bmV3", "whsec_b2xk"]
    later = now + timedelta(seconds=2)
    assert endpoints.current_secrets(endpoint, secrets_key=key, now=later) == ["whsec_bmV3"]


def _settings() -> Settings:
    return Settings(database_url="", redis_url="", jwt_secret_key="")
