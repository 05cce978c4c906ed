"""The body's nesting bound (web/json_body.py): exactly JSON_NESTING_MAX levels pass, one more is refused,
wherever the deep branch sits among shallow ones."""

import json

import pytest

from web.json_body import JSON_NESTING_MAX, _nests_deeper_than


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("body", "levels"),
    [
        ("5", 0),
        ('"text"', 0),
        ("{}", 1),
        (_nested(JSON_NESTING_MAX), JSON_NESTING_MAX),
        ('{"a": ' + _nested(JSON_NESTING_MAX - 1) + "}", JSON_NESTING_MAX),
        # A bulk body: many shallow objects, and one deep branch last among them.
        (
            json.dumps({"transfers": [{"amount": 1, "metadata": {"k": [1, 2]}}] * 50})[:-2]
            + ', {"metadata": '
            + _nested(JSON_NESTING_MAX - 3)
            + "}]}",
            JSON_NESTING_MAX,
        ),
    ],
)
def test_a_body_nests_as_deep_as_its_deepest_container(body, levels):
    value = json.loads(body)
    assert not _nests_deeper_than(value, levels)
    assert _nests_deeper_than(value, levels - 1) == (levels > 0)
