"""The Procfile's web process really serves: health, OpenAPI, Swagger UI, and a transfer over HTTP."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ops.processes import free_loopback_port
from settings import PROJECT_ROOT


def _procfile_command(name: str) -> list[str]:
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}: "):
            return shlex.split(line.split(": ", 1)[1])
    raise AssertionError(f"no {name} process in the Procfile")


@pytest.fixture(scope="module")
def web_url() -> Iterator[str]:
    port = free_loopback_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "WEB_PORT": str(port), "WEB_PROCESSES": "1", "PATH": path}
    process = subprocess.Popen(
        _procfile_command("web"), cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/health", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_health_reports_database_and_broker(web_url):
    response = requests.get(f"{web_url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_openapi_and_swagger_ui_are_served_offline(web_url):
    spec = requests.get(f"{web_url}/openapi.json", timeout=5).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    transfer = spec["paths"]["/api/v1/transactions/transfer"]["post"]
    assert "202" in transfer["responses"]
    docs = requests.get(f"{web_url}/docs", timeout=5)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert requests.get(f"{web_url}/docs/assets/swagger-ui-bundle.js", timeout=5).status_code == 200


def test_transfer_over_real_http_completes(web_url, worker):
    api = f"{web_url}/api/v1"
    signup = requests.post(
        f"{api}/auth/signup",
        timeout=10,
        json={
            "email": f"http-{time.time_ns()}@example.com",
            "password": "correct horse",
            "full_name": "H",
            "organization_name": "Http",
        },
    ).json()
    auth = {"Authorization": f"Bearer {signup['access_token']}"}
    a = requests.post(f"{api}/wallets", json={"type": "PRIMARY"}, headers=auth, timeout=5).json()["id"]
    b = requests.post(f"{api}/wallets", json={"type": "PRIMARY"}, headers=auth, timeout=5).json()["id"]
    deposit = requests.post(f"{api}/wallets/{a}/deposit", json={"amount": 900}, headers=auth, timeout=5).json()
    requests.get(f"{api}/transactions/{deposit['id']}?wait=10", headers=auth, timeout=15)
    response = requests.post(
        f"{api}/transactions/transfer",
        headers=auth,
        timeout=5,
        json={"source_wallet_id": a, "destination_wallet_id": b, "amount": 400},
    )
    assert response.status_code == 202
    final = requests.get(f"{web_url}{response.headers['Location']}?wait=10", headers=auth, timeout=15).json()
    assert final["status"] == "COMPLETED"


def test_openapi_states_the_body_limit(web_url):
    spec = requests.get(f"{web_url}/openapi.json", timeout=5).json()
    assert "1048576 bytes" in spec["info"]["description"]
    transfer = spec["components"]["schemas"]["Transfer"]["properties"]
    assert transfer["description"]["maxLength"] == 500
