"""How the console shows values: money in its currency, times for the viewer's zone, statuses as colours.

Amounts are integers in minor units everywhere in VaultCraft; the page shows them in major units with
the currency's own number of decimals (ISO 4217: two for most, none for JPY, three for KWD ...).
Times are written as ISO 8601 in UTC inside a <time datetime>, and static/console.js rewrites each in
the viewer's zone with Intl: the server never guesses a zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

# ISO 4217 currencies whose minor unit is not a hundredth.
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"), 0),
    **dict.fromkeys(("VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}

# Status → one of a few colours people already read: green done, amber waiting, blue needs a person,
# red failed, grey ended without effect.
_TONES = {
    "COMPLETED": "ok",
    "SUCCEEDED": "ok",
    "SETTLED": "ok",
    "CAPTURED": "ok",
    "CLEAN": "ok",
    "ACTIVE": "ok",
    "ENABLED": "ok",
    "APPROVED": "ok",
    "PENDING": "wait",
    "SETTLING": "wait",
    "HELD": "wait",
    "REQUESTED": "wait",
    "RUNNING": "wait",
    "IN_REVIEW": "attention",
    "LOCKED": "attention",
    "FAILED": "bad",
    "DRIFT": "bad",
    "DISABLED": "bad",
    "REJECTED": "bad",
    "DECLINED": "bad",
    "CANCELLED": "muted",
    "VOIDED": "muted",
    "EXPIRED": "muted",
    "CLOSED": "muted",
}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def money_text(amount: int | None, currency: str | None) -> str:
    """`12,345.67 INR` for 1234567 minor units of INR; a sign only when negative."""
    if amount is None:
        return "—"
    places = exponent(currency or "")
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(int(amount)), 10**places)
    text = f"{sign}{whole:,}" + (f".{fraction:0{places}d}" if places else "")
    return f"{text} {currency}" if currency else text


def money(amount: int | None, currency: str | None) -> Markup:
    """Money as an element that keeps its exact minor units for anyone who reads the page by machine."""
    if amount is None:
        return Markup("<span class='money'>—</span>")
    return Markup("<span class='money{}' data-minor='{}'>{}</span>").format(
        " negative" if int(amount) < 0 else "", int(amount), money_text(amount, currency)
    )


def major_units(amount: int, currency: str) -> float:
    """For a chart's axis only: a float is fine to plot, never to add up."""
    return int(amount) / 10 ** exponent(currency)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when(value: datetime | None) -> Markup:
    """A <time> the page's script shows in the viewer's zone; UTC until it runs."""
    stamp = iso(value)
    if stamp is None:
        return Markup("<span class='muted'>—</span>")
    assert value is not None
    shown = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup("<time datetime='{}'>{}</time>").format(stamp, shown)


def age(seconds: float | None) -> str:
    """`3 s`, `4 min`, `2 h 5 min`, `3 d 4 h`: how long something has waited."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours = seconds // 60, seconds // 3600
    if hours == 0:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def tone(status: Any) -> str:
    return _TONES.get(str(status).upper(), "muted")


def status(value: Any) -> Markup:
    """A status as a coloured badge, its text as the API spells it."""
    if value is None:
        return Markup("<span class='muted'>—</span>")
    text = str(value)
    return Markup("<span class='badge {}'>{}</span>").format(tone(text), text.replace("_", " "))


def short_id(value: Any) -> Markup:
    """The first 8 characters, the whole id on hover (and in the link it sits in)."""
    text = str(value)
    return Markup("<code title='{}'>{}…</code>").format(text, escape(text[:8]))


def percent(part: int, whole: int) -> str:
    return "—" if whole <= 0 else f"{100 * part / whole:.1f} %"


FILTERS = {
    "money": money,
    "when": when,
    "age": age,
    "status": status,
    "short_id": short_id,
    "tone": tone,
}
