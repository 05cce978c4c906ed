"""Flower, refusing to listen beyond loopback without a password: `python -m ops.flower [FLOWER OPTIONS]`.

Flower shows every task with its arguments and results, the workers and the broker, and by default
asks for no login. On 127.0.0.1 only the machine's own users reach it; on any other address (the
container image listens on 0.0.0.0) it starts only with FLOWER_BASIC_AUTH (`user:password`, Flower's
--basic-auth) or Flower's OAuth (FLOWER_AUTH_PROVIDER with FLOWER_AUTH) set. Flower reads those
variables itself; this only checks, then runs `celery --app workers.app flower` with the options.
"""

from __future__ import annotations

import ipaddress
import os
import sys

LOOPBACK_NAMES = {"localhost"}
REFUSED_EXIT_CODE = 2


def option(args: list[str], name: str) -> str | None:
    """The last value given for `--name=value` or `--name value`, else FLOWER_<NAME> (Flower's own rule)."""
    value = os.environ.get(f"FLOWER_{name.upper()}")
    for at, arg in enumerate(args):
        key, equals, given = arg.partition("=")
        if key.replace("-", "_") != f"__{name}":  # Flower takes --basic-auth and --basic_auth alike
            continue
        if equals:
            value = given
        elif at + 1 < len(args):
            value = args[at + 1]
    return value


def is_loopback(address: str) -> bool:
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, treat it as reachable from outside


def refusal(args: list[str]) -> str | None:
    """Why Flower must not start with these options, or None."""
    address = option(args, "address") or ""  # Flower's default, "", is every interface
    if is_loopback(address):
        return None
    if option(args, "basic_auth") or (option(args, "auth_provider") and option(args, "auth")):
        return None
    shown = address or "every interface"
    return (
        f"Flower would listen on {shown} without authentication: it shows every task, its arguments and "
        "results. Set FLOWER_BASIC_AUTH=user:password (or Flower's OAuth: FLOWER_AUTH_PROVIDER and "
        "FLOWER_AUTH), or listen on 127.0.0.1 (FLOWER_ADDRESS)."
    )


def main(argv: list[str]) -> int:
    args = argv[1:]
    reason = refusal(args)
    if reason is not None:
        print(f"flower: refusing to start. {reason}", file=sys.stderr, flush=True)
        return REFUSED_EXIT_CODE
    command = [sys.executable, "-m", "celery", "--app", "workers.app", "flower", *args]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
