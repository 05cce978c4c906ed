"""Which addresses a webhook may reach (server-side request forgery rules).

An endpoint's host must resolve only to public addresses: never loopback, private (RFC 1918, unique
local fc00::/7, shared 100.64/10), link-local (cloud metadata at 169.254.169.254), multicast,
unspecified or reserved. Checked when the endpoint is created and again on every connection, against
the very address dialled (a name that resolved to a public address at creation and to 127.0.0.1
now, DNS rebinding, is refused). `VAULTCRAFT_WEBHOOK_ALLOW_PRIVATE` lifts the rule for development.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressBlocked(Exception):
    """The host resolves to an address webhooks may not reach (or does not resolve at all)."""


def is_blocked(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order (a literal address is itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise AddressBlocked(f"{host} does not resolve") from error
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AddressBlocked(f"{host} does not resolve")
    return addresses


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to dial for `host`. Refused when any of them is blocked: a name that answers
    both a public and a private address could be steered to the private one."""
    addresses = resolve(host, port)
    if not allow_private:
        blocked = [str(a) for a in addresses if is_blocked(a)]
        if blocked:
            raise AddressBlocked(f"{host} resolves to an address webhooks may not reach ({', '.join(blocked)})")
    return addresses
