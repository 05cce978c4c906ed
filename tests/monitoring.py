"""The monitoring profile's files (deploy/), read the way Prometheus and Grafana read them, for the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vaultcraft.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
# Grafana's own interval variable; any duration stands for it where PromQL alone is parsed.
GRAFANA_INTERVALS = re.compile(r"\$__(?:rate_)?interval\b")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
# A name not inside another token (the `m` of `5m`, the `e` of `1e3`) and not called (`rate(`).
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "group_left", "group_right"})
# Series Prometheus writes itself for every scrape, not the target.
PROMETHEUS_SERIES = frozenset({"up"})


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, grouping labels, strings, ranges,
    functions and keywords taken out."""
    rest = GRAFANA_INTERVALS.sub("5m", expression)
    rest = _STRING.sub('""', rest)
    rest = _MATCHERS.sub(" ", rest)
    rest = _RANGE.sub(" ", rest)
    rest = _GROUPING.sub(" ", rest)
    return {name for name in _IDENTIFIER.findall(rest) if name.lower() not in _KEYWORDS}


# The sample names a metric family of each type puts in the text format (prometheus_client's parser
# names counter families without `_total`).
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def exported_names(exposition: str) -> set[str]:
    """Every sample name an exposition can carry, from its families' declared types (a labelled counter
    nobody has incremented yet declares itself, with no sample)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in _SAMPLE_SUFFIXES[family.type]
    }


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(items: Iterable[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels too."""
    for panel in dashboard()["panels"] if items is None else items:
        yield panel
        yield from panels(panel.get("panels", ()))


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", ())]


def rule_expressions() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def promtool() -> str:
    """promtool's path; a skip saying why without it, a failure in CI (.ci/run installs it)."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package before make test")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); CI installs it")
    return path
