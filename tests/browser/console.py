"""What a person does in the console, in the words the browser tests read: sign in, read a chart, wait for
a page to say something. Only the hooks the contract fixes for outside tests are relied on: the login
form's `email` and `password` inputs and its one submit button, `data-id` on every list row,
`data-chart` (and `data-drawn-points` once drawn) on every chart, `approve`/`reject` buttons on review rows.
"""

from __future__ import annotations

import os
import time
from typing import Any

from settings import PROJECT_ROOT
from tests.client import User

DOCS_DIR = PROJECT_ROOT / "docs"
# The browser's zone: not UTC, so a page that printed the server's UTC times would show it.
TIMEZONE = "Asia/Kolkata"

# What a chart's canvases hold, read back from the canvases themselves (so what was painted, not what the
# DOM claims): pixels that differ from the most common colour (the background), and of those the coloured
# ones (one channel well apart from another: a series' stroke, not grey axes, grid lines or labels).
CANVAS_PIXELS_JS = """
(chart) => {
  const canvases = chart.tagName === 'CANVAS' ? [chart] : [...chart.querySelectorAll('canvas')];
  let painted = 0, coloured = 0;
  for (const canvas of canvases) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
      const colour = ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
      counts.set(colour, (counts.get(colour) || 0) + 1);
      if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured += 1;
    }
    painted += canvas.width * canvas.height - Math.max(...counts.values());
  }
  return {painted, coloured};
}
"""


def sign_in(page: Any, user: User) -> None:
    """The login form, filled and sent as a person would; done when the console leaves the login page."""
    page.goto("/console/login")
    form = page.locator("form").filter(has=page.locator("input[name=email]"))
    form.locator("input[name=email]").fill(user.email)
    form.locator("input[name=password]").fill(user.password)
    # Exactly one submit button (the contract): a second one makes this locator ambiguous and fails.
    form.locator("button, input[type=submit]").click()
    page.wait_for_url(lambda url: "/console/login" not in url)


def drawn_points(chart: Any) -> int:
    return int(chart.get_attribute("data-drawn-points") or 0)


def canvas_pixels(chart: Any) -> dict[str, int]:
    """{"painted": n, "coloured": m} for the chart's canvases (CANVAS_PIXELS_JS)."""
    return dict(chart.evaluate(CANVAS_PIXELS_JS))


def text_after_reloads(page: Any, selector: str, wanted: str, seconds: float = 30) -> str:
    """The text of `selector` once it contains `wanted`, reloading the page as a person would; the last
    text read otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        text = str(page.locator(selector).inner_text())
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)
        page.reload()


def docs_screenshot(page: Any, name: str) -> None:
    """The README's picture of a page, docs/<name>.png, when VAULTCRAFT_SCREENSHOTS=docs; otherwise
    nothing, so an ordinary run changes no tracked file."""
    if os.environ.get("VAULTCRAFT_SCREENSHOTS") != "docs":
        return
    DOCS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS_DIR / f"{name}.png"), animations="disabled")
