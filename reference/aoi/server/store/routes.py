"""Routes: which Redis hash slot a client's keys, tokens and notification ids live in.

A client's route is six base64url characters, one of 1,024, taken from its id. Every key of
the client carries it as a hash tag (``{route}``), so one Lua script touches one slot and a
Redis Cluster runs it on one node. A token made by :func:`new_token` ends with its client's
route, and so does a notification id (the server appends its token's route): any node finds
the slot from a token or an id alone.
"""

from __future__ import annotations

import base64
import secrets
import zlib

ROUTES = 1024
ROUTE_LENGTH = 6


def route_of_client(client_id: str) -> str:
    """The client's route: one of :data:`ROUTES`, the same on every node."""
    index = zlib.crc32(client_id.encode()) % ROUTES
    return base64.urlsafe_b64encode(b"aoi" + index.to_bytes(2, "big")[-2:] + b"r").decode()[2:8]


def route_of(token_or_id: str) -> str:
    """The route a token or notification id ends with."""
    return token_or_id[-ROUTE_LENGTH:]


def new_token(client_id: str) -> str:
    """A fresh token (144 random bits: 24 characters, each of them random) that ends with
    its client's route."""
    return secrets.token_urlsafe(18) + route_of_client(client_id)
