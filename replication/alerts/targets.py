"""Which addresses alert webhooks may reach: public ones only, unless configured otherwise.

A staff user chooses a webhook's URL; without this, ``http://169.254.169.254/...`` (the cloud
metadata service), ``localhost`` or a private address would let them make the server call
inside its own network, and read the answers off the delivery's error. So a target is checked
when the channel is saved (its host as it resolves then) and again at every connection,
against the address actually connected to: a name that resolves to a public address at save
time and to a private one later (DNS rebinding) is refused when it matters.

``address_refused`` is the rule, pure; ``checked_addresses`` and ``connect`` do the lookups.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What a person is told, whatever the address was: saying which address, or which kind of
# private address, would tell a staff user about the server's network.
REFUSED = "refused: target resolves to a private address"


class TargetRefused(OSError):
    """The target resolves to an address alerts may not reach."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def address_refused(
    address: Address, *, allow_private: bool, allowed_networks: Iterable[str] = ()
) -> bool:
    """True when a webhook may not connect to ``address``.

    Public (globally routable) addresses are allowed. Private networks (10/8, 172.16/12,
    192.168/16, 100.64/10, fc00::/7) are allowed only with ``allow_private``; loopback,
    link-local (169.254/16, the metadata service's), multicast, unspecified and reserved
    addresses never are, unless a network of ``allowed_networks`` (CIDR) holds the address.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in allowed_networks:
        if address in ipaddress.ip_network(network, strict=False):
            return False
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    ):
        return True
    if address.is_global:
        return False
    return not allow_private


def _policy() -> dict:
    return {
        "allow_private": settings.ALERT_WEBHOOK_ALLOW_PRIVATE,
        "allowed_networks": settings.ALERT_WEBHOOK_ALLOWED_NETWORKS,
    }


def resolve(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to now (raises socket.gaierror when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 link-local result carries its zone ("fe80::1%eth0"): the zone is not the address.
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def checked_addresses(host: str, port: int) -> list[Address]:
    """The addresses to connect to for ``host``; TargetRefused if any of them is refused.

    One refused address refuses the name: a name that answers with a public and a private
    address would otherwise reach inside whenever the private one came first.
    """
    addresses = resolve(host, port)
    policy = _policy()
    if any(address_refused(a, **policy) for a in addresses):
        raise TargetRefused()
    return addresses


def connect(address: tuple[str, int], timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
    """``socket.create_connection`` to a checked address of the host: what the guarded HTTP
    connections call, so the address checked is the address connected to."""
    host, port = address
    error: OSError | None = None
    for resolved in checked_addresses(host, port):
        try:
            return socket.create_connection((str(resolved), port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{host!r} resolves to no address")


def url_problem(url: str) -> str | None:
    """Why a webhook may not be saved with ``url`` now, or None.

    A host that does not resolve now is let through (it may be created later, or resolve only
    where the workers run); every connection is checked anyway.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        return None  # the URL's own validation says what is wrong
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    try:
        checked_addresses(parts.hostname, port)
    except TargetRefused:
        hint = (
            ""
            if settings.ALERT_WEBHOOK_ALLOW_PRIVATE
            else " (ALERT_WEBHOOK_ALLOW_PRIVATE allows private networks for on-premises receivers)"
        )
        return (
            "Alerts are sent only to public addresses: this target resolves to a private, "
            f"loopback, link-local or reserved one{hint}."
        )
    except (OSError, UnicodeError, ValueError):
        return None
    return None
