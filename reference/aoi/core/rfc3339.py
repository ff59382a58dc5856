"""Seconds since the epoch as the RFC 3339 date-times of the wire (``created_at``, reports)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

_last_second: list[int | str | None] = [None, ""]  # the last whole second formatted, and its text


def rfc3339(epoch: float) -> str:
    """``datetime.fromtimestamp(epoch, UTC)`` in RFC 3339 with milliseconds (truncated, as
    ``isoformat(timespec="milliseconds")``): rounded to the microsecond half to even first,
    like ``fromtimestamp``. Called for every notify; the seconds part is reused while the
    seconds stay the same."""
    frac, whole = math.modf(epoch)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        second += 1
        us -= 1_000_000
    elif us < 0:
        second -= 1
        us += 1_000_000
    last = _last_second
    if last[0] != second:
        if not 0 <= second < 253402300800:  # outside years 1970..9999: the general way
            return (
                datetime.fromtimestamp(epoch, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        last[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        last[0] = second
    return f"{last[1]}.{us // 1000:03d}Z"
