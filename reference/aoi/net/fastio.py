"""Reads and writes on a plain trio TCP stream without trio's per-call overhead.

``SocketStream.send_all`` costs about seven times the ``send`` system call itself on a small
message: a conflict detector, error translation, an async context manager around the call and,
after a successful send, a trip through the scheduler (a checkpoint). Every notify and every
push answer is one such small write, so this module first tries the write synchronously on the
socket's descriptor; whatever the kernel does not take at once (a full socket buffer) goes
through ``send_all`` as before, which waits for the socket to drain. TLS streams and other
stream types always take ``send_all``.

Callers must not write to the same stream from two tasks at once (``send_all`` would tell;
this does not): the WebSocket holds its send lock, an HTTP connection has one task.

A write that fits is not a checkpoint. Every caller reaches one soon after: a WebSocket writer
parks until it is woken again, an HTTP connection waits for the next request.

Reads likewise: bytes already there are read at once; otherwise the task waits for the socket
to become readable (``trio.lowlevel.wait_readable``, where cancellation is delivered, before
anything is read: no bytes are ever lost to it) and reads then. A peer that keeps the socket
full must not keep its task from yielding, so every ``FAIR_READS``-th read that did not wait
passes through the scheduler (shielded: the bytes are already read and must reach the caller).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

import trio

_FAST = os.name == "posix"  # write(2) on a socket descriptor is send(2) without flags
_CLOSED = frozenset({errno.EBADF, errno.ENOTSOCK})  # as trio tells a closed socket
FAIR_READS = 32
_streak = 0  # reads in a row that did not wait (one event loop, one counter)


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno in _CLOSED:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


async def receive_some(
    stream: trio.abc.ReceiveStream,
    max_bytes: int,
    *,
    expect_wait: bool = False,
    wait_readable: Callable[[trio.socket.SocketType], Awaitable[None]] | None = None,
) -> bytes:
    """``stream.receive_some(max_bytes)``; ``b""`` at the end of the stream.

    ``expect_wait``: the caller knows the peer has probably sent nothing yet (it waits for
    our answer), so this skips the read that would fail and waits at once.
    ``wait_readable``: how to wait for the socket (trio's, unless given)."""
    global _streak
    if _FAST and type(stream) is trio.SocketStream:
        sock = stream.socket
        fd = sock.fileno()
        if fd >= 0:
            if not expect_wait:
                try:
                    data = os.read(fd, max_bytes)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _broken(exc) from exc
                else:
                    _streak += 1
                    if _streak >= FAIR_READS:
                        _streak = 0
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
            wait = wait_readable or trio.lowlevel.wait_readable
            while True:
                await wait(sock)
                try:
                    return os.read(fd, max_bytes)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise _broken(exc) from exc
    return bytes(await stream.receive_some(max_bytes))


def can_write_now(stream: trio.abc.SendStream) -> bool:
    """Whether :func:`write_now` can write to ``stream`` at all (a plain TCP stream)."""
    return _FAST and type(stream) is trio.SocketStream and stream.socket.fileno() >= 0


def write_now(stream: trio.abc.SendStream, data: bytes) -> int:
    """Write what the kernel takes at once, without waiting; how many bytes that was (0 when
    it takes nothing or ``stream`` is not a plain TCP stream). The caller sends the rest."""
    if not can_write_now(stream):
        return 0
    assert isinstance(stream, trio.SocketStream)
    try:
        return os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise _broken(exc) from exc


async def send_all(stream: trio.abc.SendStream, data: bytes | bytearray | memoryview) -> None:
    """``stream.send_all(data)``, synchronously when the kernel takes it all at once."""
    if _FAST and type(stream) is trio.SocketStream and data:
        fd = stream.socket.fileno()
        if fd >= 0:
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise _broken(exc) from exc
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
    await stream.send_all(data)
