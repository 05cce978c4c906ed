"""deploy/: the Prometheus configuration and alert rules check out with promtool and fire when they
should (alerts_test.yml); the Grafana dashboard is valid and reads the provisioned datasource; compose
starts both under the `monitoring` profile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from settings import PROJECT_ROOT
from tests import monitoring

PROMTOOL_SECONDS_MAX = 60


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [monitoring.promtool(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_SECONDS_MAX,
        cwd=monitoring.ALERT_RULES.parent,
    )


def test_promtool_checks_the_config_and_the_rules_it_loads():
    result = _promtool("check", "config", monitoring.PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr
    result = _promtool("check", "rules", monitoring.ALERT_RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_series_and_only_then():
    """promtool runs deploy/prometheus/alerts_test.yml; every alert has a case there."""
    result = _promtool("test", "rules", monitoring.ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in monitoring.load_yaml(monitoring.ALERT_TESTS)["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in monitoring.alert_rules()}


def test_a_broken_alert_test_fails(tmp_path):
    """The harness can fail: the same tests against rules whose threshold moved do."""
    rules = monitoring.ALERT_RULES.read_text().replace("vaultcraft_parked_intents > 0", "vaultcraft_parked_intents > 5")
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(monitoring.ALERT_TESTS, tmp_path / "alerts_test.yml")
    result = _promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert "ParkedIntents" in result.stdout + result.stderr


def test_every_alert_says_how_bad_and_what_happened():
    for rule in monitoring.alert_rules():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_queries_are_promql(tmp_path):
    """Each panel query, as a recording rule, passes promtool's parser ($__rate_interval stood in for)."""
    expressions = monitoring.dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": monitoring.GRAFANA_INTERVALS.sub("5m", expr)}
                    for index, expr in enumerate(expressions)
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(json.dumps(rules))
    result = _promtool("check", "rules", tmp_path / "dashboard.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_names_come_out_of_expressions_and_nothing_else():
    expression = (
        'histogram_quantile(0.95, sum by (le, status) (rate(a_seconds_bucket{status="COMPLETED", x=~"b|c"}[5m])))'
        ' / ignoring(mode) group_left b_total offset 1m > bool 1e3 or on(job) up{job="v"} unless c:rate5m'
        ' and time() - d_timestamp_seconds[5m:1m] + count_values("e_label", f)'
        " + rate(g_total[$__rate_interval])"
    )
    assert monitoring.metric_names(expression) == {
        "a_seconds_bucket",
        "b_total",
        "up",
        "c:rate5m",
        "d_timestamp_seconds",
        "f",
        "g_total",
    }


def test_the_dashboard_is_valid_with_unique_ids_and_the_provisioned_datasource():
    [datasource] = [
        ds for path in monitoring.DATASOURCES.glob("*.yml") for ds in monitoring.load_yaml(path)["datasources"]
    ]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provisioned = {"type": "prometheus", "uid": datasource["uid"]}
    board = monitoring.dashboard()
    assert board["uid"] and board["title"]
    every = list(monitoring.panels())
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    graphs = [panel for panel in every if panel["type"] != "row"]
    assert len(graphs) >= 9
    for panel in graphs:
        assert panel["datasource"] == provisioned, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == provisioned, panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it():
    [provider] = [
        p for path in monitoring.DASHBOARD_PROVIDERS.glob("*.yml") for p in monitoring.load_yaml(path)["providers"]
    ]
    assert provider["type"] == "file"
    grafana = _compose()["services"]["grafana"]
    mounts = {target: source for source, target, *_ in (volume.split(":") for volume in grafana["volumes"])}
    source = mounts[provider["options"]["path"]]
    assert (PROJECT_ROOT / source).resolve() == monitoring.DASHBOARD.parent
    assert (PROJECT_ROOT / mounts["/etc/grafana/provisioning"]).resolve() == monitoring.DATASOURCES.parent


def _compose() -> dict:
    return monitoring.load_yaml(PROJECT_ROOT / "docker-compose.yml")


def test_compose_runs_prometheus_and_grafana_under_the_monitoring_profile():
    services = _compose()["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        service = services[name]
        assert set(service["profiles"]) == {"monitoring", "rabbitmq-monitoring"}, name
        tag = service["image"].partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), service["image"]  # a release, not latest
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name
        deploy_mounts = [volume for volume in service["volumes"] if volume.startswith("./deploy/")]
        assert deploy_mounts and all(volume.endswith(":ro") for volume in deploy_mounts), name
        for volume in deploy_mounts:
            assert (PROJECT_ROOT / volume.split(":")[0]).is_dir(), volume
    prometheus = services["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    # Prometheus scrapes the web service on the port compose gives it.
    [job] = monitoring.load_yaml(monitoring.PROMETHEUS_CONFIG)["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"web:{services['web']['environment']['WEB_PORT']}"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("the docker CLI has no compose plugin")
    return [docker, "compose"]


def test_docker_compose_accepts_the_monitoring_profile():
    """`docker compose config` resolves the file without an engine: the monitoring profile's services are in it."""
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:secret"}
    result = subprocess.run(
        [*_docker_compose(), "--profile", "monitoring", "config", "--services"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {"prometheus", "grafana", "web"} <= set(result.stdout.split())
