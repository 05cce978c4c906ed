"""An organisation's webhook endpoints: who may manage them, what a valid one is, its secrets.

OWNER/ADMIN only; another organisation's endpoint is NotFound, like every object of another tenant.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from ledger.access import Actor, not_found, require_org_admin
from ledger.errors import Conflict, InvalidRequest
from ledger.pagination import Page, paginate
from models import DeliveryStatus, EndpointStatus, P2PStatus, WebhookDelivery, WebhookEndpoint
from notify import signing_secrets
from notify.addresses import AddressBlocked, checked_addresses

# Every event type the platform emits (the contract's list): an exact filter must name one, and a
# prefix filter ("hold.*") one of their aggregates, so a typo is a 422, not an endpoint that never hears.
EVENT_TYPES = frozenset(
    {
        *(f"transaction.{verb}" for verb in ("completed", "failed", "cancelled", "review_required", "reviewed")),
        *(f"hold.{verb}" for verb in ("held", "captured", "voided", "expired", "failed")),
        "refund.completed",
        "refund.failed",
        *(f"p2p_request.{status.value.lower()}" for status in P2PStatus),
        "settlement_batch.completed",
        "reconciliation.drift_found",
        "balance_monitor.triggered",
        "balance_monitor.resolved",
        "webhook.disabled",
        "webhook.test",
    }
)
EVENT_AGGREGATES = frozenset(name.split(".")[0] for name in EVENT_TYPES)
ALL_EVENTS = "*"
_FILTER_SHAPE = re.compile(r"^[a-z][a-z0-9_]*\.(\*|[a-z_]+)$")

URL_NOT_ALLOWED = "WEBHOOK_URL_NOT_ALLOWED"


def validate_event_types(event_types: Sequence[str]) -> list[str]:
    """The filters, each "*", "<aggregate>.*" or an exact type, without duplicates, in the given order."""
    unknown = [t for t in event_types if not _is_known_filter(t)]
    if unknown:
        raise InvalidRequest(
            "unknown event types", code="INVALID_EVENT_TYPES", details={"event_types": sorted(set(unknown))}
        )
    return list(dict.fromkeys(event_types))


def _is_known_filter(event_type: str) -> bool:
    if event_type == ALL_EVENTS:
        return True
    if not _FILTER_SHAPE.match(event_type):
        return False
    aggregate, verb = event_type.split(".")
    return aggregate in EVENT_AGGREGATES if verb == "*" else event_type in EVENT_TYPES


def matches(event_type: str, filters: Sequence[str]) -> bool:
    """Whether an endpoint with these filters receives the event (the relay matches in SQL the same way)."""
    return bool({ALL_EVENTS, event_type.split(".")[0] + ".*", event_type} & set(filters))


def validate_url(url: str, *, allow_private: bool) -> str:
    """https (http only with the private-address setting on), a host, no credentials or fragment, and
    a host that resolves only to addresses webhooks may reach."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise InvalidRequest("the URL is not valid", code="INVALID_URL") from error
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest("the URL must be an absolute https URL", code="INVALID_URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidRequest("the URL may not carry credentials or a fragment", code="INVALID_URL")
    if parts.scheme == "http" and not allow_private:
        raise InvalidRequest("webhook URLs must use https", code=URL_NOT_ALLOWED)
    try:
        checked_addresses(parts.hostname, port, allow_private=allow_private)
    except AddressBlocked as error:
        raise InvalidRequest(str(error), code=URL_NOT_ALLOWED, details={"host": parts.hostname}) from error
    return url


def _organization_endpoints(actor: Actor) -> Select[tuple[WebhookEndpoint]]:
    require_org_admin(actor)
    return select(WebhookEndpoint).where(WebhookEndpoint.organization_id == actor.organization_id)


def get_endpoint(
    session: Session, actor: Actor, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    query = _organization_endpoints(actor).where(WebhookEndpoint.id == endpoint_id)
    if for_update:
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    endpoint = session.scalars(query).one_or_none()
    if endpoint is None:
        raise not_found(
            session, WebhookEndpoint, endpoint_id, "webhook", "webhook endpoint not found", "WEBHOOK_NOT_FOUND"
        )
    return endpoint


def list_endpoints(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page[WebhookEndpoint]:
    return paginate(
        session,
        _organization_endpoints(actor),
        keys=(WebhookEndpoint.created_at, WebhookEndpoint.id),
        kinds=(datetime, uuid.UUID),
        limit=limit,
        cursor=cursor,
    )


def create_endpoint(
    session: Session,
    actor: Actor,
    *,
    url: str,
    event_types: Sequence[str],
    description: str | None,
    secrets_key: str,
    allow_private: bool,
    endpoints_max: int,
) -> tuple[WebhookEndpoint, str]:
    """A new ENABLED endpoint and its secret (returned once, stored only encrypted)."""
    count = session.scalar(select(func.count()).select_from(_organization_endpoints(actor).subquery()))
    if (count or 0) >= endpoints_max:
        raise Conflict(f"an organisation has at most {endpoints_max} webhook endpoints", code="WEBHOOK_LIMIT_REACHED")
    secret = signing_secrets.new_secret()
    endpoint = WebhookEndpoint(
        organization_id=actor.organization_id,
        url=validate_url(url, allow_private=allow_private),
        event_types=validate_event_types(event_types),
        description=description,
        status=EndpointStatus.ENABLED,
        secret_encrypted=signing_secrets.encrypt(secret, secrets_key),
        created_by=actor.user_id,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def update_endpoint(
    session: Session, actor: Actor, endpoint_id: uuid.UUID, changes: dict[str, Any], *, allow_private: bool
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, actor, endpoint_id, for_update=True)
    if "url" in changes:
        endpoint.url = validate_url(changes["url"], allow_private=allow_private)
    if "event_types" in changes:
        endpoint.event_types = validate_event_types(changes["event_types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "status" in changes and changes["status"] != endpoint.status:
        now = _now(session)
        if changes["status"] == EndpointStatus.DISABLED:
            disable(session, endpoint, now)
        else:
            endpoint.status, endpoint.disabled_at, endpoint.failing_since = EndpointStatus.ENABLED, None, None
    endpoint.updated_at = _now(session)
    return endpoint


def disable(session: Session, endpoint: WebhookEndpoint, now: datetime) -> None:
    """DISABLED: its waiting deliveries end FAILED (`ENDPOINT_DISABLED`); new events pass it by."""
    endpoint.status, endpoint.disabled_at = EndpointStatus.DISABLED, now
    disable_waiting(session, endpoint, now)


def disable_waiting(session: Session, endpoint: WebhookEndpoint, now: datetime) -> None:
    """The endpoint's waiting deliveries end FAILED (`ENDPOINT_DISABLED`)."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.FAILED,
            error="ENDPOINT_DISABLED",
            completed_at=now,
            next_attempt_at=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def delete_endpoint(session: Session, actor: Actor, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """Deleted with its deliveries; an attempt in flight finds its row gone and records nothing."""
    endpoint = get_endpoint(session, actor, endpoint_id, for_update=True)
    session.delete(endpoint)
    return endpoint


def rotate_secret(
    session: Session, actor: Actor, endpoint_id: uuid.UUID, *, secrets_key: str, overlap_seconds: float
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing beside it for `overlap_seconds`."""
    endpoint = get_endpoint(session, actor, endpoint_id, for_update=True)
    now = _now(session)
    secret = signing_secrets.new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap_seconds)
    endpoint.secret_encrypted = signing_secrets.encrypt(secret, secrets_key)
    endpoint.updated_at = now
    return endpoint, secret


def current_secrets(endpoint: WebhookEndpoint, *, secrets_key: str, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one in its overlap."""
    secrets = [signing_secrets.decrypt(endpoint.secret_encrypted, secrets_key)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted is not None and expires is not None and now < expires:
        secrets.append(signing_secrets.decrypt(endpoint.previous_secret_encrypted, secrets_key))
    return secrets


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "organization_id": endpoint.organization_id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "description": endpoint.description,
        "status": endpoint.status,
        "failing_since": endpoint.failing_since,
        "disabled_at": endpoint.disabled_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def _now(session: Session) -> datetime:
    return session.execute(select(func.clock_timestamp())).scalar_one()
