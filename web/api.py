"""flask-smorest's Api and Blueprint: the contract's error body in responses and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint

from web.errors import http_error
from web.json_body import JsonBodyParser
from web.schemas.common import ErrorSchema


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: Any) -> Any:
        return http_error(error)


class Blueprint(SmorestBlueprint):
    """Every API blueprint: bodies are read by `web.json_body`, so a body that is not JSON, or that
    Python's parser cannot take, is refused in the contract's shape."""

    ARGUMENTS_PARSER = JsonBodyParser()


api = Api()
