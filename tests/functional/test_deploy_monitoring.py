"""Every metric the alert rules and the Grafana dashboard name is one /metrics exports: a renamed metric
would otherwise leave an alert that never fires and a panel that shows nothing."""

from __future__ import annotations

from tests import monitoring


def _exported(app) -> set[str]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return monitoring.exported_names(response.get_data(as_text=True))


def test_every_metric_in_the_alert_rules_is_exported(app):
    exported = _exported(app)
    for rule in monitoring.alert_rules():
        names = monitoring.metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | monitoring.PROMETHEUS_SERIES, (rule["alert"], names - exported)


def test_every_metric_on_the_dashboard_is_exported(app):
    exported = _exported(app)
    used: set[str] = set()
    for expression in monitoring.dashboard_expressions():
        names = monitoring.metric_names(expression)
        assert names, expression
        assert names <= exported, (expression, names - exported)
        used |= names
    # The gauges this profile was built for are on it.
    assert {
        "vaultcraft_settled_amount_minor_units_total",
        "vaultcraft_oldest_pending_intent_seconds",
        "vaultcraft_settlement_workers_up",
        "vaultcraft_outbox_lag_seconds",
        "vaultcraft_parked_intents",
        "vaultcraft_transaction_accepted_to_final_seconds_bucket",
    } <= used


def test_the_exported_names_follow_each_family_type(app):
    """A histogram exports _bucket/_sum/_count and a counter _total, not each other's suffixes: the
    check above cannot be satisfied by a name that only looks right."""
    exported = _exported(app)
    assert "vaultcraft_transaction_accepted_to_final_seconds_bucket" in exported
    assert "vaultcraft_transaction_accepted_to_final_seconds" not in exported
    assert "vaultcraft_intents_accepted_total" in exported
    assert "vaultcraft_intents_accepted" not in exported
    assert "vaultcraft_parked_intents_bucket" not in exported
