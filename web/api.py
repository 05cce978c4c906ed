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


def operation_ref(method: str, path: str) -> str:
    """A JSON pointer to an operation of this API's document, for an OpenAPI link."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()


def link(method: str, path: str, description: str, *, parameters: dict[str, str] | None = None, **body: str) -> Any:
    """An OpenAPI link: `parameters` and `body` map names to runtime expressions such as
    `$response.body#/id`, so a client (or a fuzzer's stateful phase) can chain the calls."""
    definition: dict[str, Any] = {"operationRef": operation_ref(method, path), "description": description}
    if parameters:
        definition["parameters"] = parameters
    if body:
        definition["requestBody"] = body
    return definition


def links(blp: SmorestBlueprint, statuses: tuple[int, ...], named: dict[str, Any]) -> Any:
    """Document `named` links on each of the given responses of the decorated view."""
    return blp.doc(responses={status: {"links": named} for status in statuses})
