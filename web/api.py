"""flask-smorest's Api with the contract's error body in both responses and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api as SmorestApi

from web.errors import http_error
from web.schemas.common import ErrorSchema


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: Any) -> Any:
        return http_error(error)


api = Api()
