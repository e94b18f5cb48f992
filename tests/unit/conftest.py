"""The unit group needs no server: a test here that asks for a database server fails."""

from __future__ import annotations

from typing import NoReturn

import pytest

from tests import databases


@pytest.fixture(autouse=True)
def no_database_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that finds a database server (``POSTGRES_URL``, ``connect``, ...)."""

    def refused(server: databases.Server) -> NoReturn:
        pytest.fail(f"a unit test asked for the {server.name} server: it belongs in integration")

    monkeypatch.setattr(databases, "resolution", refused)
