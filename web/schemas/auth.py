"""Signup, login and user shapes."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from ledger.passwords import PASSWORD_BYTES_MAX, PASSWORD_LENGTH_MIN
from web.schemas.fields import bounded_string


def _fits_bcrypt(password: str) -> None:
    # bcrypt reads at most 72 bytes; a longer password (in UTF-8) would be silently cut or refused.
    if len(password.encode()) > PASSWORD_BYTES_MAX:
        raise ValidationError(f"must be at most {PASSWORD_BYTES_MAX} bytes in UTF-8")


def _password() -> fields.String:
    # The floor (and the check against guessable passwords) is the domain's: 422 WEAK_PASSWORD.
    return fields.String(
        required=True,
        load_only=True,
        validate=[validate.Length(max=PASSWORD_BYTES_MAX), _fits_bcrypt],
        metadata={
            "description": f"{PASSWORD_LENGTH_MIN} to {PASSWORD_BYTES_MAX} characters ({PASSWORD_BYTES_MAX} bytes), "
            "not a common password nor one made of your email, name or organisation's name (422 WEAK_PASSWORD)"
        },
    )


def _current_password() -> fields.String:
    return fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=PASSWORD_BYTES_MAX))


def _email() -> fields.Email:
    return fields.Email(required=True, validate=validate.Length(max=254))


class SignupSchema(Schema):
    email = _email()
    password = _password()
    full_name = bounded_string(200, required=True)
    organization_name = bounded_string(200, required=True)


class LoginSchema(Schema):
    email = _email()
    password = _current_password()


class UserSchema(Schema):
    id = fields.UUID(dump_only=True)
    email = fields.String()
    full_name = fields.String()
    organization_id = fields.UUID()
    role = fields.String()
    active = fields.Boolean(dump_only=True)
    is_operator = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class OrganizationSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    created_at = fields.DateTime()


class SignupResultSchema(Schema):
    user = fields.Nested(UserSchema)
    organization = fields.Nested(OrganizationSchema)
    access_token = fields.String()
    refresh_token = fields.String()


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()


class PasswordChangeSchema(Schema):
    current_password = _current_password()
    new_password = _password()


class PasswordChangeResultSchema(Schema):
    changed = fields.Boolean()


class UserActiveSchema(Schema):
    # JSON true or false only: marshmallow would also read "no", "off", 0 ...
    active = fields.Boolean(
        required=True,
        truthy={True},
        falsy={False},
        metadata={"description": "false deactivates the user, true restores"},
    )


class NewUserSchema(Schema):
    email = _email()
    password = _password()
    full_name = bounded_string(200, required=True)
    role = fields.String(required=True, validate=validate.OneOf(["ADMIN", "MEMBER"]))


class LogoutResultSchema(Schema):
    revoked = fields.Boolean()
