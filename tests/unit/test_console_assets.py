"""The console ships its chart library inside the package, at the version package.json pins, and
formats money and times the way its pages promise."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from web.console import format

CONSOLE = Path(__file__).resolve().parents[2] / "web" / "console"


def test_vendored_uplot_is_the_pinned_version():
    pinned = json.loads((CONSOLE / "package.json").read_text())["dependencies"]["uplot"]
    locked = json.loads((CONSOLE / "package-lock.json").read_text())["packages"]["node_modules/uplot"]["version"]
    header = (CONSOLE / "static" / "vendor" / "uPlot.iife.min.js").read_text()[:200]
    vendored = re.search(r"\(v(\d+\.\d+\.\d+)\)", header)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    assert vendored is not None and vendored.group(1) == pinned == locked
    assert (CONSOLE / "static" / "vendor" / "uPlot.min.css").stat().st_size > 0


def test_templates_and_static_files_are_package_data():
    pyproject = tomllib.loads((CONSOLE.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["web.console"]
    shipped = {p for pattern in patterns for p in CONSOLE.glob(pattern)}
    wanted = [*CONSOLE.glob("templates/console/*.html"), *CONSOLE.glob("static/**/*.*")]
    assert wanted and all(path in shipped for path in wanted)


def test_pages_load_nothing_from_outside():
    for template in CONSOLE.glob("templates/console/*.html"):
        assert not re.search(r"(src|href)=\"(https?:)?//", template.read_text()), template.name


def test_money_uses_the_currency_minor_unit():
    assert format.money_text(1234567, "INR") == "12,345.67 INR"
    assert format.money_text(-5, "USD") == "-0.05 USD"
    assert format.money_text(1500, "JPY") == "1,500 JPY"
    assert format.money_text(1234, "KWD") == "1.234 KWD"
    assert format.money_text(None, "INR") == "—"
    assert "data-minor='1234567'" in str(format.money(1234567, "INR"))


def test_times_are_iso_utc_for_the_viewer_script():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert "datetime='2026-01-02T03:04:05Z'" in str(format.when(at))
    assert format.age(59) == "59 s" and format.age(3 * 3600 + 120) == "3 h 2 min" and format.age(90000) == "1 d 1 h"


def test_statuses_have_familiar_colours():
    assert format.tone("COMPLETED") == "ok" and format.tone("FAILED") == "bad"
    assert format.tone("PENDING") == "wait" and format.tone("IN_REVIEW") == "attention"
    assert "<script>" not in str(format.status("<script>"))
