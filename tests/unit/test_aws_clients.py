"""Every boto3 client comes from one factory: standard retries, timeouts, the standard endpoint."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from replication.aws_clients import CONNECT_TIMEOUT, READ_TIMEOUT, client, client_config
from replication.consumer.wiring import LazyClients
from tests.paths import ROOT

LIBRARY = ROOT / "replication"
FACTORY = LIBRARY / "aws_clients.py"


@pytest.fixture(autouse=True)
def standard_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A region and credentials, and nothing from this machine's own AWS configuration."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def knobs(config: object) -> tuple[dict[str, Any], float, float]:
    """Retries and the connect and read timeouts of a botocore Config."""
    # Config sets its options as attributes that botocore's stubs do not declare.
    return (
        dict(getattr(config, "retries", None) or {}),
        getattr(config, "connect_timeout", None) or 0.0,
        getattr(config, "read_timeout", None) or 0.0,
    )


def test_the_factory_configures_standard_retries_and_both_timeouts() -> None:
    assert knobs(client_config()) == ({"mode": "standard"}, CONNECT_TIMEOUT, READ_TIMEOUT)
    # A long poll waits up to 20 s for its answer: the read timeout must outlast it.
    assert READ_TIMEOUT > 20
    assert CONNECT_TIMEOUT <= 10

    for service in ("sqs", "sns", "s3", "sts", "secretsmanager", "rds"):
        retries, connect, read = knobs(client(service).meta.config)
        assert retries["mode"] == "standard", service
        assert (connect, read) == (CONNECT_TIMEOUT, READ_TIMEOUT), service


def test_max_attempts_comes_from_the_standard_configuration_unless_a_caller_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retries, _, _ = knobs(client("sns").meta.config)
    assert "total_max_attempts" not in retries  # the standard mode's own three

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    retries, _, _ = knobs(client("sns").meta.config)
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 7)

    retries, _, _ = knobs(client("sqs", max_attempts=1).meta.config)
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 1)


def test_the_endpoint_and_region_come_from_the_standard_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert client("sqs").meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    assert client("sqs", region="us-east-2").meta.region_name == "us-east-2"

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert client("sqs").meta.endpoint_url == "http://127.0.0.1:4566"
    assert client("s3").meta.endpoint_url == "http://127.0.0.1:4566"

    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5000")
    assert client("sqs").meta.endpoint_url == "http://127.0.0.1:5000"
    assert client("sns").meta.endpoint_url == "http://127.0.0.1:4566"


def test_a_given_session_is_used_with_the_same_configuration() -> None:
    session = boto3.session.Session(region_name="ap-south-1")
    made = client("sts", session)
    assert made.meta.region_name == "ap-south-1"
    assert knobs(made.meta.config)[2] == READ_TIMEOUT


def test_the_consumers_lazy_clients_are_made_once_by_the_factory() -> None:
    clients = LazyClients()
    sqs = clients.sqs()
    assert clients.sqs() is sqs
    assert clients.s3() is clients.s3()
    assert clients.session() is clients.session()
    for made in (sqs.meta.config, clients.s3().meta.config):
        retries, connect, read = knobs(made)
        assert (retries["mode"], connect, read) == ("standard", CONNECT_TIMEOUT, READ_TIMEOUT)


def test_importing_the_factory_imports_no_boto3() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, replication.aws_clients, replication.awsenv, replication.consumer.wiring\n"
            "print(sorted(m for m in ('boto3', 'botocore.session') if m in sys.modules))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _direct_uses(path: Path) -> list[str]:
    """Where ``path`` imports boto3 or makes a client, resource or session without the factory."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Imports for the type checker only (``if TYPE_CHECKING:``) load nothing at run time.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "boto3" for alias in node.names
        ):
            found.append(f"{where} import boto3")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "boto3":
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.ImportFrom) and node.module == "botocore.config":
            found.append(f"{where} a botocore Config of its own")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if node.func.attr in ("client", "resource") and (
                name == "boto3" or "session" in name.lower()
            ):
                found.append(f"{where} {name}.{node.func.attr}(...)")
            elif node.func.attr == "Session" and name in ("boto3", "session"):
                found.append(f"{where} {name}.Session(...)")
    return found


def test_no_module_but_the_factory_makes_boto3_clients_or_sessions() -> None:
    modules = sorted(LIBRARY.rglob("*.py"))
    assert FACTORY in modules
    found = [
        f"{path.parent.relative_to(ROOT)}/{use}"
        for path in modules
        if path != FACTORY
        for use in _direct_uses(path)
    ]
    assert found == []


def test_the_check_above_sees_direct_clients_and_sessions(tmp_path: Path) -> None:
    breach = tmp_path / "breach.py"
    breach.write_text(
        "import boto3\n"
        "from botocore.config import Config\n"
        "def f(where):\n"
        "    a = boto3.client('sqs')\n"
        "    b = where.session.client('sns', config=Config())\n"
        "    c = boto3.session.Session().resource('s3')\n"
        "    d = boto3.Session()\n"
        "    return a, b, c, d\n"
        "if TYPE_CHECKING:\n"
        "    from boto3.session import Session\n"
    )
    assert sorted(_direct_uses(breach)) == [
        "breach.py:1 import boto3",
        "breach.py:2 a botocore Config of its own",
        "breach.py:4 boto3.client(...)",
        "breach.py:5 session.client(...)",
        "breach.py:6 session.Session(...)",
        "breach.py:7 boto3.Session(...)",
    ]
