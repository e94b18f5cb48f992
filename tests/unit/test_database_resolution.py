"""Where the tests find their database servers, and what they say when there is none.

These run without Docker: the engine is either absent (a socket path that does
not exist) or a stand-in answering Docker's ``/_ping`` on a Unix socket, and
the container start is a plain function that records its call.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.databases import MARIADB, POSTGRES, SERVERS, Server, docker_engine, resolve, unavailable
from tests.paths import ROOT

CLOSED = "127.0.0.1:1"
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
PING_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


def at(server: Server, host_port: str) -> Server:
    """``server`` with its local default moved to ``host_port``."""
    scheme, rest = server.default_url.split("://", 1)
    user, path = rest.split("@", 1)[0], rest.split("/", 1)[1]
    return dataclasses.replace(server, default_url=f"{scheme}://{user}@{host_port}/{path}")


def never_started(server: Server) -> tuple[str, Callable[[], None]]:
    raise AssertionError(f"a container of {server.name} was started")


class FakeEngine(socketserver.UnixStreamServer):
    """A Unix socket that answers every request with ``reply`` and keeps the requests."""

    def __init__(self, path: Path, reply: bytes) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        super().__init__(str(path), _Reply)


class _Reply(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        engine = self.server
        assert isinstance(engine, FakeEngine)
        engine.requests.append(self.request.recv(1024))
        self.request.sendall(engine.reply)


@contextmanager
def engine_at(path: Path, reply: bytes = PING_OK) -> Iterator[FakeEngine]:
    engine = FakeEngine(path, reply)
    thread = threading.Thread(target=engine.serve_forever, daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        engine.shutdown()
        engine.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.image)
def test_no_server_and_no_docker_says_what_is_needed(server: Server) -> None:
    found = resolve(at(server, CLOSED), NO_DOCKER, start=never_started)
    assert found.url == at(server, CLOSED).default_url
    assert found.needed is not None
    assert f"{server.name} at {found.url} does not answer" in found.needed
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock: no such socket" in found.needed
    assert f"{server.variable} set to the URL of a {server.name} server" in found.needed
    assert f"(as .ci/run does: {server.start_command})" in found.needed
    assert "a Docker engine reachable (DOCKER_HOST, or /var/run/docker.sock)" in found.needed
    assert f"for testcontainers to start {server.image}" in found.needed


def test_the_skip_reason_carries_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        unavailable("postgresql does not answer: connection refused")
    assert "postgresql does not answer: connection refused" in str(skipped.value)
    assert "REPLICATION_TEST_POSTGRES_URL set to the URL" in str(skipped.value)
    assert "REPLICATION_TEST_MYSQL_URL" not in str(skipped.value)


def test_a_set_variable_is_used_as_given_without_probing() -> None:
    def no_probe(url: str) -> bool:
        raise AssertionError(f"probed {url}")

    given = "postgresql://someone@db.example:5433/other"
    environ = {POSTGRES.variable: given, **NO_DOCKER}
    found = resolve(POSTGRES, environ, probe=no_probe, start=never_started)
    assert (found.url, found.origin, found.needed) == (given, POSTGRES.variable, None)


def test_a_listening_local_server_is_used_without_asking_docker(tmp_path: Path) -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listening,
        engine_at(tmp_path / "docker.sock") as engine,
    ):
        local = at(MARIADB, f"127.0.0.1:{listening.getsockname()[1]}")
        environ = {"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"}
        found = resolve(local, environ, start=never_started)
    assert (found.url, found.origin, found.needed) == (local.default_url, "local server", None)
    assert engine.requests == []


def test_docker_answering_starts_a_container_in_place_of_the_local_server(
    tmp_path: Path,
) -> None:
    started: list[str] = []
    stopped: list[str] = []

    def start(server: Server) -> tuple[str, Callable[[], None]]:
        started.append(server.image)
        return "postgresql://postgres:test@127.0.0.1:49153/test", lambda: stopped.append("yes")

    with engine_at(tmp_path / "docker.sock") as engine:
        environ = {"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"}
        found = resolve(at(POSTGRES, CLOSED), environ, start=start)
    assert engine.requests[0].startswith(b"GET /_ping ")
    assert started == ["postgres:16"]
    assert (found.url, found.origin, found.needed) == (
        "postgresql://postgres:test@127.0.0.1:49153/test",
        "container postgres:16",
        None,
    )
    assert found.stop is not None
    found.stop()
    assert stopped == ["yes"]


def test_a_container_that_does_not_start_is_reported_with_what_is_needed(
    tmp_path: Path,
) -> None:
    def start(server: Server) -> tuple[str, Callable[[], None]]:
        raise RuntimeError("pull access denied for mariadb")

    with engine_at(tmp_path / "docker.sock"):
        environ = {"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"}
        found = resolve(at(MARIADB, CLOSED), environ, start=start)
    assert found.stop is None
    assert found.needed is not None
    assert "Docker answered but mariadb:11 did not start" in found.needed
    assert "pull access denied for mariadb" in found.needed
    assert "REPLICATION_TEST_MYSQL_URL set to the URL" in found.needed


def test_something_else_on_the_docker_socket_is_not_taken_for_docker(tmp_path: Path) -> None:
    with engine_at(tmp_path / "docker.sock", reply=b"SSH-2.0-OpenSSH_9.6\r\n"):
        problem = docker_engine({"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"})
    assert problem is not None
    assert "not a Docker engine" in problem


def test_a_closed_docker_port_is_reported() -> None:
    problem = docker_engine({"DOCKER_HOST": f"tcp://{CLOSED}"})
    assert problem is not None
    assert problem.startswith(f"DOCKER_HOST=tcp://{CLOSED}: ")


def test_importing_the_module_probes_nothing_and_reading_a_url_resolves_it() -> None:
    code = (
        "import tests.databases as d\n"
        "assert d._resolved == {}, d._resolved\n"
        "from tests.databases import POSTGRES_URL\n"
        "print(POSTGRES_URL, sorted(d._resolved))\n"
    )
    environ = {**os.environ, POSTGRES.variable: "postgresql://u@h.example:1/x", **NO_DOCKER}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "postgresql://u@h.example:1/x",
        "['REPLICATION_TEST_POSTGRES_URL']",
    ]
