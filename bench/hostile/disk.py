"""A disk that fills up under the AOI Server's store, and space that comes back.

Where the machine allows it (root, ``mount -t tmpfs`` works), the store lives on a small
tmpfs and :meth:`Disk.fill` fills it with a ballast file until the kernel says ENOSPC, as
a real disk fills; :meth:`Disk.free` deletes the ballast. Elsewhere the server's own file
size limit (RLIMIT_FSIZE, set on the running process with prlimit) is lowered to 0, so
that every write of the store fails (EFBIG) until it is raised again. Either way the
server's writes fail in the kernel, not in a mock; :attr:`Disk.kind` says which it was.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMPFS_SIZE = "64m"


class Disk:
    def __init__(self, state: Path, tmpfs: bool) -> None:
        self.state = state
        self.kind = "tmpfs filled to ENOSPC" if tmpfs else "RLIMIT_FSIZE lowered to 0 (EFBIG)"
        self.tmpfs = tmpfs
        self.pid: int | None = None  # the server, for the file size limit

    def fill(self) -> None:
        if self.tmpfs:
            _fill(self.state / "ballast")
        else:
            assert self.pid is not None
            _, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (0, hard))

    def free(self) -> None:
        if self.tmpfs:
            (self.state / "ballast").unlink(missing_ok=True)
        else:
            assert self.pid is not None
            _, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (hard, hard))


def _fill(path: Path) -> None:
    """Write ``path`` until the kernel says ENOSPC, in ever smaller blocks so that not a byte is
    left. Unbuffered: a buffered file would raise ENOSPC again when it is closed. A disk
    already too full to create the file is full enough."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return
        raise
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            block = bytes(size)
            try:
                while True:
                    os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)


def _mount(path: Path, *options: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def disk(state: Path) -> Iterator[Disk]:
    """A store directory ``state`` that can fill up (create it empty)."""
    state.mkdir(parents=True, exist_ok=True)
    mounted = _mount(state, f"size={TMPFS_SIZE}")
    try:
        yield Disk(state, mounted)
    finally:
        if mounted:
            _unmount(state)


@contextmanager
def read_only(path: Path) -> Iterator[str | None]:
    """A directory that cannot be written: a read-only tmpfs where it can be mounted, else
    mode 0o555 (which stops everyone but root). Yields how, or None when neither works
    (root without the right to mount)."""
    path.mkdir(parents=True, exist_ok=True)
    if _mount(path, "ro", "size=1m"):
        try:
            yield "a read-only tmpfs"
        finally:
            _unmount(path)
        return
    path.chmod(0o555)
    try:
        yield None if os.geteuid() == 0 else "a directory of mode 0555"
    finally:
        path.chmod(0o755)
