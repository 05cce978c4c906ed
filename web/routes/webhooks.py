"""Webhook endpoints (OWNER/ADMIN of the organisation) and their deliveries. The work is in notify/."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from notify import deliveries, endpoints
from settings import get_settings
from tasks.webhooks import enqueue_noted
from web.api import Blueprint, link, links
from web.db import unit_of_work
from web.request_context import audit
from web.schemas.common import PageArgsSchema, page_schema
from web.schemas.webhooks import (
    WebhookCreateSchema,
    WebhookDeliverySchema,
    WebhookSchema,
    WebhookSecretSchema,
    WebhookUpdateSchema,
    WebhookWithSecretSchema,
)
from web.security import authenticated, current_actor

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks", description="Signed webhooks")

WebhookPageSchema = page_schema(WebhookSchema, "WebhookPage")
WebhookDeliveryPageSchema = page_schema(WebhookDeliverySchema, "WebhookDeliveryPage")
WEBHOOK_PATH = "/api/v1/webhooks/{webhook_id}"


def webhook_links(statuses: tuple[int, ...], id_expression: str = "$response.body#/id") -> Any:
    """Links from an answer that names an endpoint to what can be done with it."""
    named = {"webhook_id": id_expression}
    return links(
        blp,
        statuses,
        {
            "GetWebhook": link("get", WEBHOOK_PATH, "the endpoint", parameters=named),
            "UpdateWebhook": link("patch", WEBHOOK_PATH, "change it", parameters=named),
            "DeleteWebhook": link("delete", WEBHOOK_PATH, "delete it", parameters=named),
            "RotateWebhookSecret": link("post", WEBHOOK_PATH + "/rotate-secret", "rotate its secret", parameters=named),
            "TestWebhook": link("post", WEBHOOK_PATH + "/test", "send it a test event", parameters=named),
            "ListWebhookDeliveries": link("get", WEBHOOK_PATH + "/deliveries", "its deliveries", parameters=named),
        },
    )


def delivery_links(statuses: tuple[int, ...], prefix: str = "$response.body#") -> Any:
    """Links from an answer that names a delivery to sending it again."""
    named = {"webhook_id": f"{prefix}/endpoint_id", "delivery_id": f"{prefix}/id"}
    retry = link("post", WEBHOOK_PATH + "/deliveries/{delivery_id}/retry", "send it again", parameters=named)
    return links(blp, statuses, {"RetryWebhookDelivery": retry})


@blp.route("/", methods=["POST"])
@authenticated(blp)
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookWithSecretSchema)
@webhook_links((201,))
def create_webhook(body: dict[str, Any]) -> dict[str, Any]:
    """A new endpoint for the organisation's events. The answer carries the signing secret, shown
    only here (and on rotation). 422 `WEBHOOK_URL_NOT_ALLOWED` for plain http or a host that
    resolves to a loopback, private, link-local, multicast or unspecified address."""
    settings = get_settings()
    with unit_of_work() as session:
        actor = current_actor(session)
        endpoint, secret = endpoints.create_endpoint(
            session,
            actor,
            url=body["url"],
            event_types=body["event_types"],
            description=body["description"],
            secrets_key=settings.webhook_secrets_key,
            allow_private=settings.webhook_allow_private,
            endpoints_max=settings.webhook_endpoints_per_organization_max,
        )
        view = endpoints.endpoint_view(endpoint)
        audit(session, actor, "webhook.created", target=("webhook_endpoint", endpoint.id), after=_audited(view))
        return {**view, "secret": secret}


@blp.route("/", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, WebhookPageSchema)
@webhook_links((200,), "$response.body#/items/0/id")
def list_webhooks(args: dict[str, Any]) -> dict[str, Any]:
    """The organisation's endpoints, newest first."""
    with unit_of_work() as session:
        page = endpoints.list_endpoints(session, current_actor(session), limit=args["limit"], cursor=args["cursor"])
        return {"items": [endpoints.endpoint_view(e) for e in page.items], "next_cursor": page.next_cursor}


@blp.route("/<uuid:webhook_id>", methods=["GET"])
@authenticated(blp)
@blp.response(200, WebhookSchema)
def get_webhook(webhook_id: uuid.UUID) -> dict[str, Any]:
    with unit_of_work() as session:
        return endpoints.endpoint_view(endpoints.get_endpoint(session, current_actor(session), webhook_id))


@blp.route("/<uuid:webhook_id>", methods=["PATCH"])
@authenticated(blp)
@blp.arguments(WebhookUpdateSchema)
@blp.response(200, WebhookSchema)
def update_webhook(body: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
    """Change url, event_types, description or status (ENABLED / DISABLED: a disabled endpoint's
    waiting deliveries end FAILED; re-enabled, it receives new events)."""
    with unit_of_work() as session:
        actor = current_actor(session)
        before = _audited(endpoints.endpoint_view(endpoints.get_endpoint(session, actor, webhook_id)))
        endpoint = endpoints.update_endpoint(
            session, actor, webhook_id, body, allow_private=get_settings().webhook_allow_private
        )
        view = endpoints.endpoint_view(endpoint)
        audit(
            session,
            actor,
            "webhook.updated",
            target=("webhook_endpoint", webhook_id),
            before=before,
            after=_audited(view),
        )
        return view


@blp.route("/<uuid:webhook_id>", methods=["DELETE"])
@authenticated(blp)
@blp.response(204)
def delete_webhook(webhook_id: uuid.UUID) -> Response:
    """Delete the endpoint and its delivery history."""
    with unit_of_work() as session:
        actor = current_actor(session)
        endpoint = endpoints.delete_endpoint(session, actor, webhook_id)
        before = _audited(endpoints.endpoint_view(endpoint))
        audit(session, actor, "webhook.deleted", target=("webhook_endpoint", webhook_id), before=before)
    return Response(status=204)


@blp.route("/<uuid:webhook_id>/rotate-secret", methods=["POST"])
@authenticated(blp)
@blp.response(200, WebhookSecretSchema)
def rotate_webhook_secret(webhook_id: uuid.UUID) -> dict[str, Any]:
    """A new signing secret, shown only now. Until `previous_secret_expires_at` (24 h) every delivery
    carries a signature under each secret, so receivers can switch at their own pace."""
    settings = get_settings()
    with unit_of_work() as session:
        actor = current_actor(session)
        endpoint, secret = endpoints.rotate_secret(
            session,
            actor,
            webhook_id,
            secrets_key=settings.webhook_secrets_key,
            overlap_seconds=settings.webhook_secret_overlap_seconds,
        )
        audit(session, actor, "webhook.secret_rotated", target=("webhook_endpoint", webhook_id))
        return {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}


@blp.route("/<uuid:webhook_id>/test", methods=["POST"])
@authenticated(blp)
@blp.response(202, WebhookDeliverySchema)
@delivery_links((202,))
def test_webhook(webhook_id: uuid.UUID) -> dict[str, Any]:
    """Send a `webhook.test` event to this endpoint now; the answer is its delivery (PENDING)."""
    with unit_of_work() as session:
        delivery = deliveries.send_test(session, current_actor(session), webhook_id, get_settings())
        view = deliveries.delivery_view(delivery)
    enqueue_noted(session)
    return view


@blp.route("/<uuid:webhook_id>/deliveries", methods=["GET"])
@authenticated(blp)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, WebhookDeliveryPageSchema)
@delivery_links((200,), "$response.body#/items/0")
def list_webhook_deliveries(args: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its last attempt's outcome."""
    with unit_of_work() as session:
        page = deliveries.list_deliveries(
            session, current_actor(session), webhook_id, limit=args["limit"], cursor=args["cursor"]
        )
        return {"items": [deliveries.delivery_view(d) for d in page.items], "next_cursor": page.next_cursor}


@blp.route("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/retry", methods=["POST"])
@authenticated(blp)
@blp.response(202, WebhookDeliverySchema)
def retry_webhook_delivery(webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> dict[str, Any]:
    """Send that event again now (same `webhook-id`)."""
    with unit_of_work() as session:
        delivery = deliveries.retry_delivery(session, current_actor(session), webhook_id, delivery_id)
        view = deliveries.delivery_view(delivery)
    enqueue_noted(session)
    return view


def _audited(view: dict[str, Any]) -> dict[str, Any]:
    return {key: view[key] for key in ("url", "event_types", "description", "status")}
