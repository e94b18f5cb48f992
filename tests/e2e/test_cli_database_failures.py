"""A database the command cannot use is one ``error:`` line and an exit code, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from replication.cli import ExitCode
from tests import databases
from tests.aws import moto_server
from tests.databases import connect
from tests.e2e_support import closed_port, replication

PASSWORD = "s3cret-pw"
UNREACHABLE = "error: the database does not answer or refuses the credentials: "


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int, start: str) -> str:
    """The command exited ``code`` with a single error line on stderr starting with ``start``."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(start), line
    assert PASSWORD not in done.stderr + done.stdout
    return line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/test",
            "Connection refused",
        ),
        (f"mysql://root:{PASSWORD}@127.0.0.1:{closed_port()}/x", "Can't connect to MySQL server"),
        ("sqlite:////nonexistent/dir/x.sqlite", "unable to open database file"),
    ],
    ids=["postgresql", "mysql", "sqlite"],
)
def test_migrations_against_a_database_that_does_not_answer_exit_3(
    url: str, says: str, tmp_path: Path
) -> None:
    done = replication(
        *("migrations", "check", "--service", "orders", "--manifests", "examples"),
        *("--url", url, "--versions", str(tmp_path)),
    )

    line = assert_one_error_line(done, ExitCode.UNREACHABLE, UNREACHABLE)
    assert says in line


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_credentials_the_server_refuses_exit_3(dialect: str, tmp_path: Path) -> None:
    connect(dialect, tmp_path).close()  # the server answers (skipped, or failed in CI)
    server = urlsplit(databases.POSTGRES_URL if dialect == "postgresql" else databases.MYSQL_URL)
    port = server.port or {"postgresql": 5432, "mysql": 3306}[dialect]
    url = f"{dialect}://nobody:{PASSWORD}@{server.hostname}:{port}/test"

    done = replication(
        *("migrations", "check", "--service", "orders", "--manifests", "examples"),
        *("--url", url, "--versions", str(tmp_path)),
    )

    line = assert_one_error_line(done, ExitCode.UNREACHABLE, UNREACHABLE)
    assert "nobody" in line


def test_a_missing_database_driver_is_named_with_what_installs_it(tmp_path: Path) -> None:
    done = replication(
        *("migrations", "check", "--service", "orders", "--manifests", "examples"),
        *("--url", "mysql+mysqldb://root@127.0.0.1:3306/test", "--versions", str(tmp_path)),
    )

    line = assert_one_error_line(done, ExitCode.INVALID, "error: the database driver MySQLdb")
    assert "is not installed" in line
    assert "pip install PyMySQL" in line
    assert "mysql://" in line


def test_the_relay_against_a_database_that_does_not_answer_exits_3() -> None:
    with moto_server() as server:
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/test"
        done = replication(
            *("relay", "--service", "crm", "--manifests", "examples", "--once"),
            env={**server.env(), "CRM_DATABASE_URL": url},
        )

    line = assert_one_error_line(done, ExitCode.UNREACHABLE, UNREACHABLE)
    assert "Connection refused" in line


def test_the_demo_against_a_database_that_does_not_answer_exits_3() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/test"

    done = replication("demo", "--database-url", url)

    line = assert_one_error_line(done, ExitCode.UNREACHABLE, UNREACHABLE)
    assert "Connection refused" in line
