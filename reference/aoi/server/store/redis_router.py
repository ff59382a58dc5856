"""Which node of a fleet holds which client's session, and the messages nodes send each other,
on the Redis that holds the fleet's store.

A node that welcomes a client *claims* it: ``PREFIX{route}:at:CLIENT`` is set to the claim,
``NODE|N`` (the node's id and a number of its own), and the claim it replaced comes back,
so that the node named there can be told to close its connection. A node that lets a session
go deletes the key, unless a newer claim replaced it meanwhile. The key outlives a node
killed with its sessions: a message sent there reaches nobody, and the notification it was
about waits in the store's queue for the node the client reaches next.

Each node subscribes to its own channel, ``PREFIX:node:NODE``. :meth:`RedisRouter.forward`
publishes to the node that holds a client, in one script: it finds nobody, or the sender
itself, without publishing.
"""

from __future__ import annotations

from .redis_store import RedisStore
from .resp import Script
from .routes import route_of_client

RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# KEYS: the client's claim. ARGV: the channel prefix, this node, the message. Returns the
# receivers, or -1 when this node holds the client itself.
FORWARD = Script("""
local claim = redis.call('GET', KEYS[1])
if not claim then return 0 end
local node = string.match(claim, '^(.*)|')
if node == ARGV[2] then return -1 end
return redis.call('PUBLISH', ARGV[1] .. node, ARGV[3])
""")

HERE = -1  # what forward returns when the sending node holds the client


def node_of(claim: str) -> str:
    return claim.rpartition("|")[0]


class RedisRouter:
    """The fleet's router for ``node``, on ``store``'s Redis connection."""

    def __init__(self, store: RedisStore, node: str) -> None:
        self.store = store
        self.node = node
        self.channels = f"{store.prefix}:node:"
        self.channel = self.channels + node
        self._claims = 0

    def _at(self, client_id: str) -> str:
        return f"{self.store.prefix}{{{route_of_client(client_id)}}}:at:{client_id}"

    async def claim(self, client_id: str) -> tuple[str, str | None]:
        """Claim ``client_id`` for this node: the new claim, and the one it replaced."""
        self._claims += 1
        claim = f"{self.node}|{self._claims}"
        key = self._at(client_id)
        previous = await self.store._call(lambda r: r.execute("SET", key, claim, "GET"))
        return claim, None if previous is None else previous.decode()

    async def release(self, client_id: str, claim: str) -> None:
        """Let the client go, unless another claim replaced ``claim``."""
        key = self._at(client_id)
        await self.store._call(lambda r: r.run_script(RELEASE, (key,), (claim,)))

    async def forward(self, client_id: str, message: bytes) -> int:
        """``message`` to the node that holds ``client_id``: how many received it (0 when
        no node holds it or its node is gone), or :data:`HERE`."""
        key, args = self._at(client_id), (self.channels, self.node, message)
        received: int = await self.store._call(lambda r: r.run_script(FORWARD, (key,), args))
        return received

    async def send(self, node: str, message: bytes) -> int:
        """``message`` to ``node``'s channel; how many received it."""
        channel = self.channels + node
        received: int = await self.store._call(lambda r: r.execute("PUBLISH", channel, message))
        return received
