"""The connecting client's address, believing ``X-Forwarded-For`` only from trusted proxies.

When the peer is in ``[http] trusted_proxies``, the forwarded chain is walked from the
right, skipping trusted hops; the first untrusted address is the client. Otherwise the
header is ignored — anyone can send it::

    client_address(request, app.config.http.trusted_proxies)   # "203.0.113.7"
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from starlette.requests import Request

__all__ = ["client_address"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _trusted(address: str, networks: Sequence[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def client_address(request: Request, trusted: Sequence[str]) -> str | None:
    """The client's IP as far as it can be believed; None when unknown."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted:
        return peer
    networks = _networks(tuple(trusted))
    if not _trusted(peer, networks):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    client = peer
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, networks):
            break
    return client
