"""The Flask application factory."""

from __future__ import annotations

from flask import Blueprint, Flask
from swagger_ui_bundle import swagger_ui_path

from ops.logging_setup import configure_logging
from ops.metrics import install_commit_hooks
from settings import Settings, get_settings
from tasks.outbox import install_wake_hook
from web import denials, headers, metrics, request_context
from web.api import api
from web.console import install as install_console
from web.errors import register_error_handlers
from web.limits import init_limits
from web.routes import (
    audit,
    auth,
    bulk,
    compat,
    fraud,
    health,
    holds,
    monitors,
    organizations,
    p2p,
    reconciliation,
    risk,
    settlements,
    transactions,
    wallets,
    webhooks,
)
from web.security import SECURITY_SCHEMES
from web.tokens import configure_jwt

API_BLUEPRINTS = (
    auth.blp,
    organizations.blp,
    wallets.blp,
    transactions.blp,
    holds.blp,
    bulk.blp,
    p2p.blp,
    settlements.blp,
    compat.blp,
    reconciliation.blp,
    audit.blp,
    risk.blp,
    fraud.rules_blp,
    fraud.reviews_blp,
    webhooks.blp,
    monitors.blp,
)


def _configure_openapi(app: Flask, settings: Settings) -> None:
    app.config.update(
        API_TITLE="VaultCraft",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI's assets come from a pip package, so /docs works with no internet access.
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        # No badge from validator.swagger.io: the docs page loads nothing from outside the app.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Durable transfer intents settled into a double-entry ledger. Amounts are integers in "
                    f"minor units. Request bodies are limited to {settings.request_body_bytes_max} bytes "
                    "(413 beyond); every string field states its maxLength."
                )
            },
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    )
    app.register_blueprint(
        Blueprint("swagger_assets", __name__, static_folder=str(swagger_ui_path), static_url_path="/docs/assets")
    )


def create_app() -> Flask:
    settings = get_settings()
    app = Flask("vaultcraft")
    app.config["MAX_CONTENT_LENGTH"] = settings.request_body_bytes_max
    app.url_map.strict_slashes = False
    _configure_openapi(app, settings)
    configure_jwt(app, settings)
    init_limits(app, settings)
    api.init_app(app)
    for blueprint in API_BLUEPRINTS:
        api.register_blueprint(blueprint)
    app.register_blueprint(health.blp)
    register_error_handlers(app)
    denials.install(app)
    install_console(app, settings)
    configure_logging("web")
    install_commit_hooks()
    install_wake_hook()
    request_context.install(app)
    metrics.install(app)
    headers.install(app)
    return app
