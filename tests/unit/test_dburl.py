"""Database URLs: one table says which dialect a scheme is and which driver it means."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from replication.consumer.database import spec_from_url
from replication.dburl import dialect_of, driver_of, register_drivers, sqlalchemy_url
from replication.errors import ConfigurationError
from tests.paths import ROOT

SCHEMA = "?options=-csearch_path%3Dorders"


@pytest.mark.parametrize(
    ("url", "dialect", "driver", "explicit"),
    [
        ("postgresql://u@h/db", "postgresql", "psycopg2", "postgresql+psycopg2://u@h/db"),
        ("postgres://u@h/db", "postgresql", "psycopg2", "postgresql+psycopg2://u@h/db"),
        (
            f"postgresql://u@h/db{SCHEMA}",
            "postgresql",
            "psycopg2",
            f"postgresql+psycopg2://u@h/db{SCHEMA}",
        ),
        ("postgresql+psycopg2://u@h/db", "postgresql", "psycopg2", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql", "psycopg", "postgresql+psycopg://u@h/db"),
        (
            f"postgresql+psycopg://u@h/db{SCHEMA}",
            "postgresql",
            "psycopg",
            f"postgresql+psycopg://u@h/db{SCHEMA}",
        ),
        ("mysql://r@h/t", "mysql", "pymysql", "mysql+pymysql://r@h/t?charset=utf8mb4"),
        ("mariadb://r@h/t?x=1", "mysql", "pymysql", "mariadb+pymysql://r@h/t?x=1&charset=utf8mb4"),
        ("mysql+pymysql://r@h/t", "mysql", "pymysql", "mysql+pymysql://r@h/t"),
        ("sqlite:///x.db", "sqlite", "sqlite3", "sqlite:///x.db"),
    ],
)
def test_a_scheme_names_its_dialect_and_driver(
    url: str, dialect: str, driver: str, explicit: str
) -> None:
    assert dialect_of(url) == dialect
    assert driver_of(url) == driver
    spec = spec_from_url(url)
    assert (spec.dialect, spec.driver) == (dialect, driver)
    assert sqlalchemy_url(url) == explicit


def test_an_unknown_scheme_is_refused_with_the_ones_that_work() -> None:
    assert dialect_of("oracle://x") is None
    assert driver_of("oracle://x") is None
    assert driver_of("postgresql+asyncpg://x") is None
    with pytest.raises(ConfigurationError, match="unsupported database URL scheme 'oracle'"):
        spec_from_url("oracle://x")


def run_python(code: str) -> tuple[int, str, str]:
    """Run ``code`` in a fresh interpreter: no module the test process imported is loaded."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.strip(), done.stderr


def test_plain_postgresql_means_psycopg3_where_psycopg2_is_not_installed() -> None:
    code = """
        import sys
        sys.modules["psycopg2"] = None  # as if it were not installed
        from replication.consumer.database import ConnectionSpec, spec_from_url
        from replication.dburl import sqlalchemy_url

        url = "postgresql://u@h/db?options=-csearch_path%3Dorders"
        print(sqlalchemy_url(url))
        print(spec_from_url(url).driver, ConnectionSpec("postgresql").driver)
        print(sqlalchemy_url("postgresql+psycopg2://u@h/db"))
    """
    assert run_python(code)[:2] == (
        0,
        "postgresql+psycopg://u@h/db?options=-csearch_path%3Dorders\n"
        "psycopg psycopg\n"
        "postgresql+psycopg2://u@h/db",
    )


def test_reading_a_url_imports_neither_sqlalchemy_nor_a_driver() -> None:
    # The apply function's cold start reads its URL through these modules.
    code = """
        import sys
        from replication.consumer.database import spec_from_url
        from replication.dburl import sqlalchemy_url

        spec_from_url("postgresql://u@h/db")
        sqlalchemy_url("mysql://r@h/t")
        heavy = ("sqlalchemy", "psycopg2", "psycopg", "pymysql", "MySQLdb")
        print(sorted(m for m in heavy if m in sys.modules))
    """
    assert run_python(code)[:2] == (0, "[]")


@pytest.mark.skipif(
    importlib.util.find_spec("MySQLdb") is not None,
    reason="mysqlclient is installed: SQLAlchemy's default driver for mysql:// stays",
)
def test_registering_drivers_makes_plain_mysql_and_mariadb_mean_pymysql_once() -> None:
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

    register_drivers()
    loaders = dict(registry.impls)
    register_drivers()

    assert registry.impls == loaders
    assert registry.load("mysql") is MySQLDialect_pymysql
    mariadb = registry.load("mariadb")
    assert issubclass(mariadb, MariaDBDialect)
    assert issubclass(mariadb, MySQLDialect_pymysql)
