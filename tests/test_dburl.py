"""Database URLs: one table says which dialect a scheme is and which driver it means."""

from __future__ import annotations

import pytest

from replication.consumer.database import spec_from_url
from replication.dburl import dialect_of, sqlalchemy_url
from replication.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "dialect", "explicit"),
    [
        ("postgresql://u@h/db", "postgresql", "postgresql+psycopg2://u@h/db"),
        ("postgres://u@h/db", "postgresql", "postgresql+psycopg2://u@h/db"),
        ("mysql://r@h/t", "mysql", "mysql+pymysql://r@h/t?charset=utf8mb4"),
        ("mariadb://r@h/t?x=1", "mysql", "mariadb+pymysql://r@h/t?x=1&charset=utf8mb4"),
        ("mysql+pymysql://r@h/t", "mysql", "mysql+pymysql://r@h/t"),
        ("sqlite:///x.db", "sqlite", "sqlite:///x.db"),
    ],
)
def test_a_scheme_names_its_dialect_and_driver(url: str, dialect: str, explicit: str) -> None:
    assert dialect_of(url) == dialect
    assert spec_from_url(url).dialect == dialect
    assert sqlalchemy_url(url) == explicit


def test_an_unknown_scheme_is_refused_with_the_ones_that_work() -> None:
    assert dialect_of("oracle://x") is None
    with pytest.raises(ConfigurationError, match="unsupported database URL scheme 'oracle'"):
        spec_from_url("oracle://x")
