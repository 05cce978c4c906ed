"""The web console: server-rendered pages at /console, a second face of the same app.

Its pages call the same ledger functions the API's routes call, under the same access rules, with a
session cookie and CSRF-protected forms instead of bearer tokens (see sessions.py and auth.py).
"""

from __future__ import annotations

from flask import Flask, Response, request

from settings import Settings
from web.console import errors, format, sessions
from web.console.auth import csrf
from web.console.blueprint import bp

# Scripts and styles only from the app itself: chart data rides in data attributes, never inline
# script. uPlot sizes its canvas through element styles, hence style-src 'unsafe-inline'.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"  # balances and names: no cache keeps a page
    return response


def install(app: Flask, settings: Settings) -> None:
    """Mount the console on the app (after the API's error handlers: it adds its own for /console)."""
    from web.console import pages  # noqa: F401  (registers every page's routes)

    sessions.configure(app, settings)
    # CSRF is checked by the console's own guard (auth.guard), never by default: the JSON API,
    # authenticated by bearer tokens, stays exactly as it was.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # The token lives as long as the login (the session cookie carries it), not an hour.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    csrf.init_app(app)
    app.jinja_env.filters.update(format.FILTERS)
    app.register_blueprint(bp)
    errors.install(app)
