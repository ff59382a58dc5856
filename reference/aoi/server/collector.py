"""Python's cyclic garbage collector, paced for a server that answers in milliseconds.

CPython collects its oldest generation once enough objects have outlived the younger ones.
During a storm of thousands of connections that happens several times in a few seconds,
and each pass walks every live object while the event loop waits: 40 to 75 ms with 3,000
connections open, on a 2-core machine, long enough to be an established session's worst
notification of the storm. Reference counting frees nearly everything the server drops
the moment it drops it; what only the collector finds is garbage in cycles (exceptions
and their tracebacks, mostly), and that can wait a little. So the ``aoi server`` daemon:

- moves what exists once it is ready (modules, schemas, its configuration: none of it
  ever garbage) out of every collection (``gc.freeze``);
- leaves the young generations to CPython: their passes are short, they hold only what
  is new;
- collects the oldest generation itself, at most every :data:`FULL_EVERY_S` seconds, at
  a quiet second (the younger generations were collected at most :data:`QUIET_YOUNG`
  times in it), and after :data:`FULL_AT_MOST_S` seconds whatever the load.
"""

from __future__ import annotations

import gc
import logging

import trio

log = logging.getLogger("aoi.server")

FULL_EVERY_S = 10.0
FULL_AT_MOST_S = 120.0
QUIET_YOUNG = 2  # middle-generation collections in one second still counted as quiet
CHECK_S = 1.0
NEVER = 1_000_000_000  # a threshold the oldest generation's counter does not reach


async def pace_collections() -> None:
    """Take over the oldest generation's collections (forever; cancel to stop). The
    collector is left as it was found when this returns."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], NEVER)
    try:
        since_full = 0.0
        young_before = gc.get_count()[2]
        while True:
            await trio.sleep(CHECK_S)
            since_full += CHECK_S
            young = gc.get_count()[2]  # middle-generation collections since the last full
            quiet = young - young_before <= QUIET_YOUNG
            young_before = young
            if since_full >= FULL_AT_MOST_S or (since_full >= FULL_EVERY_S and quiet):
                gc.collect()
                since_full, young_before = 0.0, 0
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
