"""Marshmallow schemas: they validate requests and, through flask-smorest, write the OpenAPI document."""
