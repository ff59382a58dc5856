"""Steps of the tokens an AOI Server issues on register: their form (base64url, at least 128
bits), the endpoint that goes with each, that they look random, and that an app registered
anew gets a new one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pytest_bdd import then

from conformance.device import describe
from conformance.steps import text
from conformance.world import World

TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,256}$")
DIFFERING_MIN = 18  # characters two random tokens differ in, at least (see tokens_random)
NAME_IN_TOKEN_MIN = 8  # ids at least this long must not appear in a token (tokens_random)


@then(
    text(
        'the new token of app "{app:q}" of client "{name:q}" differs from its unregistered one '
        "[{req:req}]"
    )
)
def token_is_new(world: World, app: str, name: str, req: str) -> None:
    old, _ = world.notes[f"unregistered {name} {app}"]
    world.check(
        req,
        world.device(name).tokens[app] != old,
        f"registered again after unregistering, app {app} got back its old token {old!r}: "
        "a token that a client and app id always give is computed, not drawn at random",
    )


@then(
    text('client "{name:q}" gets a token of at least 128 bits and an endpoint for it [{req:req}]')
)
def gets_token(world: World, name: str, req: str) -> None:
    device = world.device(name)
    alias, frame = world.notes[f"register {name}"]
    frame = world.found(
        req,
        frame,
        f"register was not answered with registered: {describe(frame, device.connection().closed)}",
        lambda f: f.type == "registered",
    )
    token, endpoint = frame.get("token"), frame.get("endpoint")
    world.check(
        req,
        isinstance(token, str) and bool(TOKEN.match(token)),
        f"token {token!r} is not base64url of at least 22 characters (128 bits)",
    )
    world.check(
        req,
        frame.get("req") == device._req and frame.get("app_id") == world.app_id(alias),
        f"registered must echo req and app_id: {frame.raw!s:.300}",
    )
    parts = urlsplit(endpoint if isinstance(endpoint, str) else "")
    world.check(
        req,
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and parts.path.endswith(f"/v1/push/{token}"),
        f"endpoint {endpoint!r} is not the full AOI-3 URL .../v1/push/{{token}} of this token",
    )


@then(
    text('the tokens of clients "{a:q}" and "{b:q}" are all different and look random [{req:req}]')
)
def tokens_random(world: World, a: str, b: str, req: str) -> None:
    found = {
        f"{name}/{alias}": token
        for name in (a, b)
        for alias, token in world.device(name).tokens.items()
    }
    tokens = list(found.values())
    world.check(
        req,
        len(set(tokens)) == len(tokens) == 4,
        f"expected 4 different tokens for 2 clients x 2 apps, got {found}",
    )
    world.check(
        req,
        all(TOKEN.match(t) for t in tokens),
        f"tokens must be base64url of at least 22 characters (128 bits): {found}",
    )
    # A token may carry fixed parts (a server or shard name) besides its 128 random bits,
    # but between what two tokens share at their ends, 22 random characters must differ;
    # by chance a few of them coincide (DIFFERING_MIN allows 4, a chance below one in 10^6).
    for i, first in enumerate(tokens):
        for second in tokens[i + 1 :]:
            prefix = len(_common_prefix(first, second))
            suffix = len(_common_prefix(first[::-1], second[::-1]))
            differing = min(len(first), len(second)) - prefix - suffix
            world.check(
                req,
                differing >= DIFFERING_MIN,
                f"tokens {first!r} and {second!r} differ in only {max(differing, 0)} characters "
                f"between a common prefix of {prefix} and suffix of {suffix}: they look derived, "
                "not random (128 random bits are 22 base64url characters)",
            )
    # Only names long enough that a random token does not hold them by chance (a two-letter
    # client id is in one random token of a few hundred).
    names = [world.device(n).identity.client_id for n in (a, b)]
    names += [world.app_id(alias) for alias in ("one", "two")]
    names = [name for name in names if len(name) >= NAME_IN_TOKEN_MIN]
    world.check(
        req,
        not any(name in token for name in names for token in tokens),
        "a token contains a client id or an app id: tokens must be random",
    )


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
