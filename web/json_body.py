"""Request bodies: JSON only, read once per request, refused in the contract's shape when they are not.

Python's own parser fails on some input with errors that are not JSON errors (an integer literal
beyond `sys.get_int_max_str_digits()` raises a plain ValueError, deep nesting a RecursionError),
and decodes `\\ud800` escapes into strings no database or UTF-8 encoder accepts. Every body is read
here, by the views' argument parser and by the login rate limiter alike, so each of those is a 400
or 422 that names the problem, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request, g
from webargs import core
from webargs.flaskparser import FlaskParser

from web.errors import RequestRefused

# Containers inside containers, counting the body itself: metadata objects hold a few levels at most.
JSON_NESTING_MAX = 32
_PARSED_BODY = "vaultcraft_json_body"
# A \uD800-\uDFFF escape: the only way an unpaired surrogate gets into a decoded string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _invalid(message: str) -> RequestRefused:
    return RequestRefused(400, "INVALID_JSON", message)


def _decode(request: Request, data: bytes) -> Any:
    if not core.is_json(request.mimetype):
        raise RequestRefused(
            400, "UNSUPPORTED_MEDIA_TYPE", "the body must be JSON, sent with Content-Type: application/json"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(f"the body is not UTF-8: byte {error.start} cannot be decoded") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _invalid(f"the body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise _invalid(f"the body nests deeper than {JSON_NESTING_MAX} levels") from None
    except ValueError:  # int() refused a literal over the digit limit, the one non-syntax error
        raise RequestRefused(422, "VALIDATION_ERROR", "a number in the body has too many digits") from None


def _nests_deeper_than(value: Any, levels_max: int) -> bool:
    """Iterative, so a deep value cannot exhaust the stack that measures it.

    Only containers are stacked (the parser makes plain dicts and lists): a bulk body is a thousand
    objects of scalars, and stacking each of their values too cost more than parsing the body."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > levels_max:
            return True
        below = level + 1
        for child in item.values() if type(item) is dict else item:
            if type(child) is dict or type(child) is list:
                stack.append((child, below))
    return False


def _holds_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= char <= "\udfff" for char in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _check_shape(data: bytes, value: Any) -> None:
    # Byte counts first: a transfer's body is a few hundred bytes and skips both walks.
    if data.count(b"[") + data.count(b"{") > JSON_NESTING_MAX and _nests_deeper_than(value, JSON_NESTING_MAX):
        raise _invalid(f"the body nests deeper than {JSON_NESTING_MAX} levels")
    if _SURROGATE_ESCAPE.search(data) and _holds_surrogate(value):
        raise _invalid("the body escapes an unpaired UTF-16 surrogate (\\uD800-\\uDFFF), which is not text")


def read_json_body(request: Request) -> Any:
    """The request's JSON body, or `core.missing` when there is none. Raises RequestRefused
    for a body that is not JSON, and Flask's 413 for one over the size limit."""
    cached = g.get(_PARSED_BODY, core.missing)
    if cached is not core.missing:
        return cached
    data = request.get_data(cache=True)
    if not data:
        return core.missing
    value = _decode(request, data)
    _check_shape(data, value)
    setattr(g, _PARSED_BODY, value)
    return value


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading the JSON body through `read_json_body`."""

    def load_json(self, req: Request, schema: Any) -> Any:
        return read_json_body(req)
