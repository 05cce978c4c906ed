"""Security headers: nosniff on every answer, no-store on the API's, a strict policy on the docs page.

The Swagger UI page (flask-smorest's template) loads the bundled swagger-ui files from /docs/assets/
and starts them with one inline script. That script is allowed by its SHA-256, computed once from the
page as the app renders it, so no other inline script and no script from elsewhere can run there.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, request

API_PATH_PREFIX = "/api/"
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"
# Inline scripts: a <script> element without a src attribute.
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def _docs_policy(script_hashes: list[str]) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' " + " ".join(f"'sha256-{digest}'" for digest in script_hashes),
            # Swagger UI renders descriptions as HTML whose style attributes it does not control.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",  # its icons are data: URIs in swagger-ui.css
            "connect-src 'self'",  # openapi.json and "Try it out"
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _inline_script_hashes(app: Flask) -> list[str]:
    with app.test_request_context("/docs"):
        page = app.view_functions[DOCS_ENDPOINT]()
    return [
        base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        for script in _INLINE_SCRIPT.findall(str(page))
    ]


def install(app: Flask) -> None:
    """After the API and its docs route are registered."""
    docs_policy = _docs_policy(_inline_script_hashes(app)) if DOCS_ENDPOINT in app.view_functions else None

    def secure(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path.startswith(API_PATH_PREFIX):
            # Tokens, users, balances: no shared or browser cache may keep any of it, errors included.
            response.headers["Cache-Control"] = "no-store"
        elif docs_policy is not None and request.endpoint == DOCS_ENDPOINT:
            response.headers["Content-Security-Policy"] = docs_policy
            response.headers["X-Frame-Options"] = "DENY"
        return response

    app.after_request(secure)
