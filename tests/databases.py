"""Connections to the real test databases, as plain DB-API connections.

Where the servers are: the URL in REPLICATION_TEST_POSTGRES_URL or
REPLICATION_TEST_MYSQL_URL when it is set, used as given; otherwise the local
server of the project machines (127.0.0.1:5432, 127.0.0.1:3306). When that
local server does not answer and a Docker engine does, testcontainers starts a
container of it (postgres:16, mariadb:11) once, for the whole test session,
which stops it at its end. When neither answers, :func:`unavailable` says what
is needed.

``POSTGRES_URL`` and ``MYSQL_URL`` are resolved when first read (``from
tests.databases import POSTGRES_URL`` reads it), so a run that needs no
database probes nothing, and one whose servers listen only opens a socket.
"""

from __future__ import annotations

import atexit
import importlib
import os
import socket
import sqlite3
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

POSTGRES_URL: str
"""The PostgreSQL server's URL (resolved on first read)."""
MYSQL_URL: str
"""The MariaDB/MySQL server's URL (resolved on first read)."""

PROBE_TIMEOUT = 1.0
"""Seconds to wait for a local server or a Docker engine to answer."""
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
CONTAINER_PASSWORD = "test"


@dataclass(frozen=True)
class Server:
    """A kind of database server the tests use, and the three ways to get one."""

    name: str
    variable: str
    """The environment variable that names a server's URL."""
    default_url: str
    """The local server of the project machines."""
    start_command: str
    """How ``.ci/run`` starts the local server."""
    image: str
    """What testcontainers starts when the local server does not answer."""
    words: tuple[str, ...]
    """Words in a skip reason that mean this server."""


POSTGRES = Server(
    name="PostgreSQL",
    variable="REPLICATION_TEST_POSTGRES_URL",
    default_url="postgresql://postgres@127.0.0.1:5432/test",
    start_command="pg_ctlcluster --skip-systemctl-redirect <version> main start",
    image="postgres:16",
    words=("postgresql",),
)
MARIADB = Server(
    name="MariaDB/MySQL",
    variable="REPLICATION_TEST_MYSQL_URL",
    default_url="mysql://root@127.0.0.1:3306/test",
    start_command="start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    image="mariadb:11",
    words=("mysql", "mariadb"),
)
SERVERS = (POSTGRES, MARIADB)


@dataclass(frozen=True)
class Resolution:
    """Where a server's tests connect, and what is needed when nothing answers there."""

    url: str
    origin: str
    needed: str | None = None
    stop: Callable[[], None] | None = None
    """Stops the container started for it, if one was."""


Starter = Callable[[Server], tuple[str, Callable[[], None]]]
"""Starts a container of a server: its URL and how to stop it."""


def answers(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether something accepts TCP connections at the host and port of ``url``."""
    parts = urlsplit(url)
    default_port = 3306 if parts.scheme.startswith("mysql") else 5432
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=timeout
        ).close()
    except OSError:
        return False
    return True


def docker_engine(environ: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` when a Docker engine answers ``/_ping``, else why not.

    Checks DOCKER_HOST when set, else /var/run/docker.sock, over the socket
    itself: no Docker client is imported to find out that there is no engine.
    """
    host = environ.get("DOCKER_HOST") or f"unix://{DEFAULT_DOCKER_SOCKET}"
    where = f"DOCKER_HOST={host}" if environ.get("DOCKER_HOST") else DEFAULT_DOCKER_SOCKET
    parts = urlsplit(host)
    if parts.scheme == "unix" and not Path(parts.path).exists():
        return f"{where}: no such socket"
    if parts.scheme not in ("unix", "tcp", "http") or environ.get("DOCKER_TLS_VERIFY"):
        return None  # ssh://, npipe://, TLS: testcontainers tries, and a failure is reported
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(parts.path)
            except OSError:
                sock.close()
                raise
        else:
            address = (parts.hostname or "127.0.0.1", parts.port or 2375)
            sock = socket.create_connection(address, timeout=timeout)
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(256)
    except OSError as exc:
        return f"{where}: {exc}"
    if reply.split(b" ", 2)[1:2] != [b"200"]:
        return f"{where}: not a Docker engine ({reply[:40]!r})"
    return None


def needed(server: Server, detail: str) -> str:
    """What a run needs to test against ``server``, after ``detail`` of what was tried."""
    return (
        f"{detail}. The {server.name} tests need one of: {server.variable} set to the URL "
        f"of a {server.name} server; the local server at {server.default_url} started "
        f"(as .ci/run does: {server.start_command}); or a Docker engine reachable "
        f"(DOCKER_HOST, or {DEFAULT_DOCKER_SOCKET}) for testcontainers to start {server.image}"
    )


def start_container(server: Server) -> tuple[str, Callable[[], None]]:
    """Start a testcontainers container of ``server``; its URL and how to stop it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if server is POSTGRES:
            container: Any = _container_class("postgres", "PostgresContainer")(
                server.image, username="postgres", password=CONTAINER_PASSWORD, dbname="test"
            )
            scheme, user, port = "postgresql", "postgres", 5432
        else:
            # No MariaDB module in testcontainers; MariaDB's image takes MySQL's variables.
            container = _container_class("mysql", "MySqlContainer")(
                server.image, username="root", password=CONTAINER_PASSWORD, dbname="test"
            )
            scheme, user, port = "mysql", "root", 3306
    container.start()
    try:
        host = container.get_container_host_ip()
        mapped = container.get_exposed_port(port)
    except Exception:
        container.stop()
        raise
    url = f"{scheme}://{user}:{CONTAINER_PASSWORD}@{host}:{mapped}/test"
    return url, container.stop


def _container_class(module: str, name: str) -> Any:
    # testcontainers 4.15 moved the database modules under ``community``.
    try:
        found = importlib.import_module(f"testcontainers.community.{module}")
    except ImportError:
        found = importlib.import_module(f"testcontainers.{module}")
    return getattr(found, name)


def resolve(
    server: Server,
    environ: Mapping[str, str],
    *,
    probe: Callable[[str], bool] = answers,
    start: Starter = start_container,
) -> Resolution:
    """Where ``server``'s tests connect: the variable's URL, the local server, or a container.

    The local server is probed only when the variable is not set, and Docker
    only when the local server does not answer.
    """
    given = environ.get(server.variable)
    if given:
        return Resolution(given, server.variable)
    if probe(server.default_url):
        return Resolution(server.default_url, "local server")
    missing = f"{server.name} at {server.default_url} does not answer"
    no_docker = docker_engine(environ)
    if no_docker is not None:
        return Resolution(
            server.default_url, "nothing", needed(server, f"{missing}, nor Docker ({no_docker})")
        )
    try:
        url, stop = start(server)
    except Exception as exc:  # any failure of Docker or of the image is reported, not raised
        failure = f"{missing}, and Docker answered but {server.image} did not start: {exc!r}"
        return Resolution(server.default_url, "nothing", needed(server, failure))
    return Resolution(url, f"container {server.image}", stop=stop)


_resolved: dict[str, Resolution] = {}


def resolution(server: Server) -> Resolution:
    """``server``'s resolution in this process, done on first use.

    A started container's URL goes into the environment, so the commands the
    tests run and pytest-xdist's workers use it instead of starting their own.
    """
    if server.variable not in _resolved:
        found = resolve(server, os.environ)
        if found.stop is not None:
            os.environ[server.variable] = found.url
            atexit.register(stop_containers)
        _resolved[server.variable] = found
    return _resolved[server.variable]


def stop_containers() -> None:
    """Stop the containers this process started (at the end of the test session)."""
    for variable, found in list(_resolved.items()):
        if found.stop is not None:
            _resolved[variable] = Resolution(found.url, found.origin)
            os.environ.pop(variable, None)
            found.stop()


def __getattr__(name: str) -> str:
    if name == "POSTGRES_URL":
        return resolution(POSTGRES).url
    if name == "MYSQL_URL":
        return resolution(MARIADB).url
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Database:
    """A DB-API connection with the facts tests need about it."""

    dialect: str
    connection: Any
    sqlalchemy_url: str

    def close(self) -> None:
        """Roll back whatever is open and close."""
        try:
            self.connection.rollback()
        finally:
            self.connection.close()


def advice(server: Server) -> str:
    """What is needed for ``server``, as far as this process has found out."""
    found = _resolved.get(server.variable)
    if found is None:
        return needed(server, f"{server.name} does not answer")
    if found.needed:
        return found.needed
    if found.origin == server.variable:
        return (
            f"{server.variable} names {found.url}: start that server, set {server.variable} "
            f"to the URL of one that answers, or unset it to use the local server at "
            f"{server.default_url} (or, when that does not answer and Docker does, a "
            f"testcontainers {server.image})"
        )
    return needed(server, f"{server.name} was expected at {found.url} ({found.origin})")


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI where a missing server is a broken setup.

    A reason that names a database server gets what it takes to provide one.
    """
    lowered = reason.lower()
    hints = [advice(s) for s in SERVERS if any(word in lowered for word in s.words)]
    message = "\n".join([reason, *hints])
    if os.environ.get("CI"):
        pytest.fail(f"database required under CI: {message}")
    pytest.skip(message)


def mysql_connection(url: str | None = None) -> Any:
    """A PyMySQL connection (utf8mb4) to the MariaDB/MySQL server of ``url``."""
    import pymysql

    parts = urlsplit(url or resolution(MARIADB).url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or "test",
        charset="utf8mb4",
        connect_timeout=5,
    )


def mysql_sqlalchemy_url(url: str | None = None) -> str:
    """The SQLAlchemy URL (PyMySQL, utf8mb4) of a mysql:// URL."""
    sa_url = (url or resolution(MARIADB).url).replace("mysql:", "mysql+pymysql:", 1)
    return sa_url + ("&" if "?" in sa_url else "?") + "charset=utf8mb4"


def connect(dialect: str, tmp_path: Path) -> Database:
    """Open a connection of ``dialect`` (sqlite files live in ``tmp_path``)."""
    if dialect == "sqlite":
        path = tmp_path / "mirror.sqlite"
        return Database("sqlite", sqlite3.connect(path), f"sqlite:///{path}")
    if dialect == "postgresql":
        import psycopg2

        url = resolution(POSTGRES).url
        try:
            conn = psycopg2.connect(url, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            unavailable(f"PostgreSQL at {url} does not answer: {exc}")
        return Database("postgresql", conn, url.replace("postgresql:", "postgresql+psycopg2:", 1))
    if dialect == "mysql":
        import pymysql

        url = resolution(MARIADB).url
        try:
            conn = mysql_connection(url)
        except pymysql.err.OperationalError as exc:
            unavailable(f"MariaDB/MySQL at {url} does not answer: {exc}")
        return Database("mysql", conn, mysql_sqlalchemy_url(url))
    raise ValueError(dialect)
