"""Mistakes an operator makes with ``aoi server``, ``aoi server drain`` and ``aoi push``:
each ends with one line on stderr that names what to fix, and a non-zero exit status."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trustme

from .command import aoi, closed_port, one_line


def serve(tmp_path: Path, *flags: str) -> tuple[int, str]:
    """``aoi server`` that cannot start: its exit status and its one line."""
    done = aoi("server", "--db", str(tmp_path / "aoi.db"), *flags, timeout=30)
    return done.returncode, one_line(done)


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve(tmp_path, "--listen", f"127.0.0.1:{port}") == (
            1,
            f"aoi server: 127.0.0.1:{port} is in use",
        )


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pems")
    issued = trustme.CA().issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    trustme.CA().issue_cert("other").private_key_pem.write_to_path(str(folder / "other.key"))
    (folder / "garbage.pem").write_text("not a PEM file\n")
    return folder


def test_a_bad_certificate_is_named(tmp_path: Path, pems: Path) -> None:
    garbage = pems / "garbage.pem"
    status, line = serve(tmp_path, "--tls-cert", str(garbage), "--tls-key", str(garbage))
    assert (status, line) == (1, f"aoi server: {garbage}: no PEM certificate in it (tls_cert)")


def test_a_key_that_does_not_fit_is_named(tmp_path: Path, pems: Path) -> None:
    cert, key = pems / "cert.pem", pems / "other.key"
    status, line = serve(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    assert status == 1
    assert (
        line == f"aoi server: {key}: not a PEM private key of the certificate in {cert} (tls_key)"
    )


def test_an_unusable_store_is_named(tmp_path: Path) -> None:
    store = tmp_path / "aoi.db"
    store.write_text("not a database, " * 100)
    assert serve(tmp_path, "--listen", "127.0.0.1:0") == (
        1,
        f"aoi server: the store {store}: file is not a database",
    )


def test_a_redis_store_that_is_not_there_is_named(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    assert serve(tmp_path, "--listen", "127.0.0.1:0", "--store", url) == (
        1,
        f"aoi server: the store {url}: cannot connect to {url[:-2]}: "
        f"all attempts to connect to {url[8:-2]} failed",
    )


def test_a_store_url_that_is_not_redis_is_named(tmp_path: Path) -> None:
    assert serve(tmp_path, "--store", "redis://127.0.0.1:99999/0") == (
        2,
        "aoi server: invalid configuration: --store: 'redis://127.0.0.1:99999/0': "
        "the port is 1..65535 and the database a number",
    )


def test_a_policy_that_is_not_json_is_named(tmp_path: Path, pems: Path) -> None:
    policy = pems / "garbage.pem"
    status, line = serve(tmp_path, "--policy", str(policy))
    assert status == 2 and line.startswith(f"aoi server: {policy}: not JSON (")


@pytest.mark.parametrize(
    ("argv", "status", "line"),
    [
        (["http://[bad"], 2, "aoi push: invalid URL 'http://[bad': Invalid IPv6 URL"),
        (["ftp://h/v1/push/t"], 2,
         "aoi push: invalid URL 'ftp://h/v1/push/t': expected http(s)://HOST[:PORT]/..."),
        (["http://127.0.0.1:1/v1/push/t", "--payload", "@missing.json"], 2,
         "aoi push: --payload @missing.json: no such file"),
        (["http://127.0.0.1:1/v1/push/t", "--ca-file", "missing.pem"], 2,
         "aoi push: --ca-file missing.pem: no such file"),
    ],
)  # fmt: skip
def test_push_mistakes(argv: list[str], status: int, line: str, tmp_path: Path) -> None:
    done = aoi("push", "--key", "k", "--payload", "hello", *argv, cwd=tmp_path)
    assert (done.returncode, one_line(done), done.stdout) == (status, line, "")


def test_push_without_a_key(tmp_path: Path) -> None:
    done = aoi("push", "http://127.0.0.1:1/v1/push/t", "--payload", "hello", env={})
    assert (done.returncode, one_line(done)) == (
        2,
        "aoi push: --key (or $AOI_PUSH_KEY) is required",
    )


def test_push_to_nobody() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/push/t"
    done = aoi("push", url, "--key", "k", "--payload", "hello")
    assert done.returncode == 1
    assert one_line(done) == f"aoi push: cannot reach {url}: Connection refused"


@pytest.mark.parametrize(
    ("argv", "status", "line"),
    [
        (["--admin", "http://[bad"], 2,
         "aoi server drain: invalid URL 'http://[bad': Invalid IPv6 URL"),
        (["--admin", "http://127.0.0.1:1", "--ca-file", "missing.pem"], 2,
         "aoi server drain: --ca-file missing.pem: no such file"),
    ],
)  # fmt: skip
def test_drain_mistakes(argv: list[str], status: int, line: str, tmp_path: Path) -> None:
    done = aoi("server", "drain", *argv, cwd=tmp_path)
    assert (done.returncode, one_line(done)) == (status, line)


def test_drain_of_nobody() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = aoi("server", "drain", "--admin", url)
    assert done.returncode == 1 and one_line(done).startswith(
        f"aoi server drain: cannot reach {url}: "
    )


@pytest.mark.parametrize(
    ("url", "status", "line"),
    [
        ("http://127.0.0.1:7700/", 2,
         "aoi app: --client: invalid URL 'http://127.0.0.1:7700/': expected ws://HOST[:PORT]/..."),
        ("ws://[bad", 2, "aoi app: --client: invalid URL 'ws://[bad': Invalid IPv6 URL"),
    ],
)  # fmt: skip
def test_app_mistakes(url: str, status: int, line: str) -> None:
    done = aoi("app", "--app-id", "com.example.chat", "--client", url)
    assert (done.returncode, one_line(done), done.stdout) == (status, line, "")


def test_app_without_a_client() -> None:
    url = f"ws://127.0.0.1:{closed_port()}/"
    done = aoi("app", "--app-id", "com.example.chat", "--client", url)
    assert done.returncode == 1
    assert one_line(done).startswith(f"aoi app: cannot reach the AOI Client at {url}: ")
