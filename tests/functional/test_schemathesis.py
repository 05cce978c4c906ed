"""Fuzzing with a real client: schemathesis generates requests from /openapi.json for every operation.

No response may be a 5xx, and every documented response must match its documented schema.
Operations are driven through hypothesis directly (one pytest test per operation, bounded examples).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES_PER_OPERATION = 8


def _operations():
    from web.app import create_app

    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app())
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


OPERATIONS = _operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_server_errors_and_documented_shapes(operation, fuzz_user):
    headers = {"Authorization": f"Bearer {fuzz_user.token}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

    fuzz()
