"""Codec throughput: typical small AOI-2 frames decoded and validated per second.

python -m bench.codec [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time

from aoi.core.codec import Codec
from aoi.core.messages import Limits, Notify, Welcome

TOKEN = "Zq3x9Kd0aB7cLmN2pQ4rS6"
FRAMES = [
    '{"type":"hello","version":1,"client_id":"device-0042","credential":"c2VjcmV0LWtleQ"}',
    '{"type":"register","req":7,"app_id":"com.example.chat"}',
    '{"type":"ack","ids":["n-8f1e2a","n-8f1e2b"]}',
    '{"type":"ping","ts":1764072000.5}',
    json.dumps(
        Notify(
            id="n-8f1e2a", token=TOKEN, app_id="com.example.chat",
            payload='{"title":"New message","from":"alice","unread":3}', priority="high",
            ttl_s=3600, created_at="2026-11-25T12:00:00Z",
        ).to_wire()
    ),
]  # fmt: skip


def measure(seconds: float) -> dict[str, float]:
    codec = Codec.from_contract("aoi2")
    welcome = Welcome(server_id="a", session="S" * 22, keepalive_s=270, limits=Limits(4096, 32))
    decoded = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            for frame in FRAMES:
                codec.decode(frame)
            decoded += len(FRAMES)
    decode_rate = decoded / (time.perf_counter() - start)
    encoded = 0
    start = time.perf_counter()
    while time.perf_counter() < start + seconds / 2:
        for _ in range(1000):
            codec.encode(welcome)
        encoded += 1000
    encode_rate = encoded / (time.perf_counter() - start)
    return {"decode_per_s": round(decode_rate), "encode_per_s": round(encode_rate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    result = measure(parser.parse_args().seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
