"""Connections to the real test databases, as plain DB-API connections."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "REPLICATION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("REPLICATION_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


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


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI where a missing server is a broken setup."""
    if os.environ.get("CI"):
        pytest.fail(f"database required under CI: {reason}")
    pytest.skip(reason)


def mysql_connection(url: str = MYSQL_URL) -> Any:
    """A PyMySQL connection (utf8mb4) to the MariaDB/MySQL server of ``url``."""
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or "test",
        charset="utf8mb4",
        connect_timeout=5,
    )


def mysql_sqlalchemy_url(url: str = MYSQL_URL) -> str:
    """The SQLAlchemy URL (PyMySQL, utf8mb4) of a mysql:// URL."""
    sa_url = url.replace("mysql:", "mysql+pymysql:", 1)
    return sa_url + ("&" if "?" in sa_url else "?") + "charset=utf8mb4"


def connect(dialect: str, tmp_path: Path) -> Database:
    """Open a connection of ``dialect`` (sqlite files live in ``tmp_path``)."""
    if dialect == "sqlite":
        path = tmp_path / "mirror.sqlite"
        return Database("sqlite", sqlite3.connect(path), f"sqlite:///{path}")
    if dialect == "postgresql":
        import psycopg2

        try:
            conn = psycopg2.connect(POSTGRES_URL, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            unavailable(f"PostgreSQL at {POSTGRES_URL} does not answer: {exc}")
        return Database(
            "postgresql", conn, POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1)
        )
    if dialect == "mysql":
        import pymysql

        try:
            conn = mysql_connection()
        except pymysql.err.OperationalError as exc:
            unavailable(f"MariaDB/MySQL at {MYSQL_URL} does not answer: {exc}")
        return Database("mysql", conn, mysql_sqlalchemy_url())
    raise ValueError(dialect)
