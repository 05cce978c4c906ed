"""`?dry_run=true` on every write endpoint: what the call would do, from the state at this moment,
with nothing written.

How: the endpoint's own intake runs (the same validation, access rules and Idempotency-Key
handling, so a request the real call refuses gets the same 4xx) in a database transaction that is
always rolled back. Inside it the new intent exists, and `ledger.settlement.preview` predicts its
outcome with the engine's planning. Then the rollback takes every row away (intent, audit row,
idempotency key, outbox event), and the session's after-commit hooks never run: no metric is
counted, no relay is woken, and the view publishes nothing (it does not call `settle_soon`).

An endpoint joins in three lines:

    @dry_run.documented(blp, replay=TransactionSchema)     # the query argument and the 200 answer
    def view(...):
        if dry_run.requested():
            return dry_run.answer(lambda session, actor: <the intake>(session, actor, ...).id)
        ...the real call...

`answer` takes the intake as a function of (session, actor) returning the id of the intent it
wrote or replayed. An intake whose answer is not a transfer-like intent adds its prediction to
`ledger.settlement.preview` and keeps this shape: a hold's HOLD intent is predicted HELD there by
the engine's plan, and a void, which ends its hold at once rather than through the engine, passes
`predict=preview.predict_released` with the hold's id (COMPLETED, the release shown).

The check costs the real call nothing measurable: a request with no query string is not a dry run,
and nothing else is read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Response, current_app, request
from flask_smorest import abort
from marshmallow import Schema, ValidationError
from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.settlement import preview
from models.db import session_factory
from web.api import Blueprint
from web.schemas.dry_run import DryRunQuerySchema, DryRunSchema
from web.security import current_actor

DRY_RUN_QUERY = DryRunQuerySchema()
DRY_RUN_ANSWER = DryRunSchema()
DRY_RUN_DESCRIPTION = "With `?dry_run=true`: the predicted outcome; nothing was written"


def documented(blp: Blueprint, *, replay: type[Schema] | None = None, answer: type[Schema] = DryRunSchema) -> Any:
    """Document `dry_run` among the view's query arguments and its 200 answer (beside the 200 of an
    Idempotency-Key replay, when the endpoint has one)."""
    if replay is None:
        schema: Any = answer
        description = DRY_RUN_DESCRIPTION
    else:
        schema = {"anyOf": [replay, answer]}
        description = f"Replay of an earlier request with the same key. {DRY_RUN_DESCRIPTION}."
    return blp.doc(
        parameters=[{"in": "query", "schema": DryRunQuerySchema}],
        responses={200: {"description": description, "content": {"application/json": {"schema": schema}}}},
    )


def requested() -> bool:
    """Whether this request is a dry run. An invalid `dry_run` value is refused, 422, as any argument."""
    if not request.query_string:
        return False
    try:
        return bool(DRY_RUN_QUERY.load(request.args)["dry_run"])
    except ValidationError as error:
        abort(422, errors={"query": error.messages})
    raise AssertionError("abort raises")


@contextmanager
def rolled_back() -> Iterator[Session]:
    """A unit of work that never commits. Its rollback also drops what the domain noted for the
    after-commit hooks (metrics, the outbox relay's wake)."""
    with session_factory()() as session:
        session.begin()
        try:
            yield session
        finally:
            session.rollback()


Intake = Callable[[Session, Actor], uuid.UUID]
Predictor = Callable[[Session, Actor, uuid.UUID], preview.Prediction]


def respond(body: dict[str, Any], schema: Schema = DRY_RUN_ANSWER) -> Response:
    """200 with `body` dumped by `schema`: a Response of its own, so the view's documented 202
    schema (the real call's answer) does not dump it."""
    return current_app.response_class(current_app.json.dumps(schema.dump(body)), mimetype="application/json")


def answer(intake: Intake, predict: Predictor = preview.predict_one) -> Response:
    """Run the intake in a rolled-back transaction and answer 200 with its intent's predicted outcome."""
    with rolled_back() as session:
        actor = current_actor(session)
        intent_id = intake(session, actor)
        prediction = predict(session, actor, intent_id)
    return respond(prediction.as_dict())
