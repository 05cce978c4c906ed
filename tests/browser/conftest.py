"""The console in a real browser: the app behind a real HTTP server on loopback, a real headless
Chromium driven by Playwright, the run's database and its Celery worker (tests/conftest.py).

Chromium is Debian's `chromium` (/usr/bin/chromium, which .ci/run installs), else Playwright's own when
one is installed. Without either the tests skip and say why, except in CI (CI=true), where that fails.

A failing test leaves a screenshot of its page under var/test-artifacts/ (the README's own screenshots:
tests/browser/console.py).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from settings import VAR_DIR
from tests.browser.console import TIMEZONE

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (CI runs as root, where Chromium's sandbox refuses to start), no GPU, and none of
# the background traffic a desktop browser makes (updates, sync, QUIC probes): the tests talk to loopback.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = VAR_DIR / "test-artifacts"
VIEWPORT = {"width": 1440, "height": 900}
# Long enough for a page under a loaded 2-core machine, short enough that a missing element fails fast.
ACTION_TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def _executable(chromium: Any) -> str | None:
    """Debian's Chromium when installed, else Playwright's own (None lets Playwright find it)."""
    if DEBIAN_CHROMIUM.exists():
        return str(DEBIAN_CHROMIUM)
    if Path(chromium.executable_path).exists():
        return None
    _unavailable(f"no Chromium: install Debian's (`apt-get install chromium`, {DEBIAN_CHROMIUM}) or Playwright's own")
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the whole run; each test gets a fresh context (cookies, storage) of its own."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    for stale in ARTIFACTS_DIR.glob("tests_browser_*.png"):  # an earlier run's failures, not this one's
        stale.unlink()
    with sync_playwright() as playwright:
        executable = _executable(playwright.chromium)
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def console_url(worker) -> Iterator[str]:
    """The real app, as deployed (not in Flask's testing mode), behind werkzeug's threaded HTTP server
    on a free loopback port. Same process, so the same database and settings as the rest of the run."""
    from werkzeug.serving import make_server

    from web.app import create_app

    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def context(browser, console_url) -> Iterator[Any]:
    created = browser.new_context(base_url=console_url, viewport=VIEWPORT, timezone_id=TIMEZONE, locale="en-GB")
    created.set_default_timeout(ACTION_TIMEOUT_MS)
    yield created
    created.close()


@pytest.fixture
def page(context) -> Any:
    return context.new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's page, as it was when the test failed, under var/test-artifacts/."""
    report = yield
    open_page = getattr(item, "funcargs", {}).get("page")
    if report.when != "call" or not report.failed or open_page is None or open_page.is_closed():
        return report
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid) + ".png")
    try:
        open_page.screenshot(path=str(path), full_page=True)
    except Exception as error:  # the page may have crashed: the test's own failure is what matters
        report.sections.append(("screenshot", f"no screenshot: {error}"))
    else:
        report.sections.append(("screenshot", f"the page at failure: {path}"))
    return report
