"""What the domain needs to know about the HTTP request: its id and the client's address.

Every request gets an id (the client's `X-Request-ID` when it is sane, else a new one), answered in
the `X-Request-ID` header, put on every log line, stored on the intents it accepts and carried into
their settlement task. `audit(...)` is the one-line call views make to add an audit row to their
unit of work with that context.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from ledger.access import Actor
from ledger.integrity import audit as audit_trail
from ledger.integrity import events
from ledger.intents import refunds
from ledger.intents.transfers import Submitted
from ledger.notes import note_accepted
from models import Transaction, TransactionStatus, TransactionType, User, Wallet, WalletMember
from models.audit import REQUEST_ID_LENGTH_MAX
from ops.logging_setup import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(rf"^[A-Za-z0-9._:-]{{1,{REQUEST_ID_LENGTH_MAX}}}$")


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else request_id_var.get()


def origin() -> audit_trail.Origin:
    if not has_request_context():
        return audit_trail.Origin(request_id=request_id_var.get())
    return audit_trail.Origin(source_address=request.remote_addr, request_id=request_id())


def audit(session: Session, actor: Actor | User | None, action: str, **details: Any) -> None:
    """Append an audit row to the view's unit of work (see ledger.integrity.audit.record for `details`)."""
    audit_trail.record(session, actor, action, origin=origin(), **details)


def intent_accepted(session: Session, actor: Actor, submitted: Submitted) -> None:
    """A new intent: stamp it with the request id, audit it (`transfer.created`, `deposit.created`, ...)
    and count it once the unit of work commits. A replayed Idempotency-Key records nothing."""
    if not submitted.created:
        return
    transaction = submitted.transaction
    transaction.request_id = request_id()
    is_refund = transaction.type == TransactionType.REFUND
    after = refunds.refund_data(transaction) if is_refund else events.transaction_data(transaction)
    audit(session, actor, f"{transaction.type.lower()}.created", target=transaction, after=after)
    note_accepted(session, str(transaction.type))


def transaction_cancelled(session: Session, actor: Actor, transaction: Transaction) -> None:
    """Audit the cancel and write its `transaction.cancelled` event in the same unit of work."""
    audit(
        session,
        actor,
        "transaction.cancelled",
        target=transaction,
        before={"status": "PENDING"},
        after={"status": transaction.status},
    )
    events.record_transaction_events(session, [transaction.id])


# Derives the key of failed logins' email digests from the token signing key, for that one purpose.
EMAIL_DIGEST_KEY_LABEL = b"vaultcraft:failed-login-email"


def email_digest_key() -> bytes:
    secret = str(current_app.config["JWT_SECRET_KEY"]).encode()
    return hmac.new(secret, EMAIL_DIGEST_KEY_LABEL, hashlib.sha256).digest()


def record_login_failure(email: str, code: str) -> None:
    """A failed login is audited in its own transaction: the login's rolled back. `code` is the
    refusal's (USER_DEACTIVATED, or INVALID_CREDENTIALS for a wrong password or an unknown email)."""
    from ledger.identity import find_user_by_email
    from web.db import unit_of_work

    with unit_of_work() as session:
        user = find_user_by_email(session, email)
        if user is None:
            reason = audit_trail.LoginFailure.UNKNOWN_EMAIL
        elif code == audit_trail.LoginFailure.USER_DEACTIVATED:
            reason = audit_trail.LoginFailure.USER_DEACTIVATED
        else:
            reason = audit_trail.LoginFailure.WRONG_PASSWORD
        audit_trail.record_login_failure(
            session, user, email=email, reason=reason, digest_key=email_digest_key(), origin=origin()
        )


def _begin() -> None:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = supplied if _SANE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    g.request_id_token = request_id_var.set(g.request_id)


def _answer(response: Response) -> Response:
    if g.get("request_id"):
        response.headers[REQUEST_ID_HEADER] = g.request_id
    return response


def _end(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        # Set in another context (a streamed response): nothing to undo here.
        with contextlib.suppress(ValueError):
            request_id_var.reset(token)


def _stamp_intent(_mapper: Any, _connection: Any, target: Transaction) -> None:
    """An intent inserted while answering a request carries the request's id in its INSERT, so
    `intent_accepted` then sets an equal value and no UPDATE of the new row follows."""
    if target.request_id is None and target.status == TransactionStatus.PENDING and has_request_context():
        target.request_id = request_id()


def install(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_answer)
    app.teardown_request(_end)
    if not event.contains(Transaction, "before_insert", _stamp_intent):
        event.listen(Transaction, "before_insert", _stamp_intent)


def wallet_status(session: Session, wallet_id: uuid.UUID) -> str | None:
    """A wallet's status before a change, read without loading (or locking) the wallet object."""
    return session.execute(select(Wallet.status).where(Wallet.id == wallet_id)).scalar_one_or_none()


def wallet_status_changed(session: Session, actor: Actor, wallet: Wallet, before: str | None) -> None:
    if before is not None and str(before) != str(wallet.status):
        audit(
            session,
            actor,
            "wallet.status_changed",
            target=wallet,
            before={"status": before},
            after={"status": wallet.status},
        )


def member_view(member: WalletMember) -> dict[str, Any]:
    return {"user_id": member.user_id, "role": member.role, "granted_by": member.granted_by}
