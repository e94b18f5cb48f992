"""Every deployed function reads its service's database from the same secret, in RDS's formats.

A moto server plays Secrets Manager (boto3 over HTTP); the databases are the
real PostgreSQL and MariaDB servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

import psycopg2
import pytest
import sqlalchemy as sa

from replication.consumer.database import connect, spec_for, url_for
from replication.dbtls import DatabaseTls
from replication.errors import ConfigurationError
from replication.manifest import Manifest, load_manifest
from tests.aws import CREDENTIALS, MotoServer, moto_server
from tests.databases import MYSQL_URL, POSTGRES_URL
from tests.paths import ROOT


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("ORDERS_DATABASE_URL", "CRM_DATABASE_URL", "REPLICATION_DATABASE_IAM_AUTH"):
        monkeypatch.delenv(name, raising=False)
    # A secret means verified TLS unless told otherwise, and the test servers have no TLS
    # (tests/integration/test_database_tls.py holds the default to that).
    monkeypatch.setenv("REPLICATION_DATABASE_TLS", "off")
    return moto


def orders() -> Manifest:
    return load_manifest(ROOT / "examples" / "orders" / "replication.yaml")


def secret(moto: MotoServer, name: str, document: dict[str, object]) -> str:
    created = moto.client("secretsmanager").create_secret(
        Name=f"{name}-{len(json.dumps(document))}-{id(document)}",
        SecretString=json.dumps(document),
    )
    arn: str = created["ARN"]
    return arn


def rds_credentials(url: str, engine: str) -> dict[str, object]:
    """The secret RDS creates as 'credentials for an RDS database'."""
    parts = urlsplit(url)
    return {
        "engine": engine,
        "host": parts.hostname,
        "port": parts.port,
        "username": parts.username,
        "password": parts.password or "",
        "dbname": parts.path.lstrip("/"),
    }


def select_one(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT 1").scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_an_rds_credentials_secret_serves_the_apply_and_sqlalchemy_paths(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = orders()
    assert manifest.database_secret_env == "ORDERS_DATABASE_SECRET_ARN"
    arn = secret(aws, "orders-db", rds_credentials(POSTGRES_URL, "postgres"))
    monkeypatch.setenv("ORDERS_DATABASE_SECRET_ARN", arn)

    spec = spec_for(manifest)
    connection = connect(spec)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
    finally:
        connection.close()
    assert select_one(url_for(manifest)) == 1  # what the relay, migrations and sync open


@pytest.mark.postgresql
def test_a_master_user_secret_takes_host_port_and_name_from_the_environment(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = urlsplit(POSTGRES_URL)
    arn = secret(aws, "orders-master", {"username": parts.username, "password": ""})
    monkeypatch.setenv("ORDERS_DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("ORDERS_DATABASE_HOST", parts.hostname or "")
    monkeypatch.setenv("ORDERS_DATABASE_PORT", str(parts.port))
    monkeypatch.setenv("ORDERS_DATABASE_NAME", parts.path.lstrip("/"))

    assert select_one(url_for(orders())) == 1


@pytest.mark.mysql
def test_a_mariadb_secret_opens_pymysql(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = secret(aws, "orders-maria", rds_credentials(MYSQL_URL, "mariadb"))
    monkeypatch.setenv("ORDERS_DATABASE_SECRET_ARN", arn)

    url = url_for(orders())

    assert url.startswith("mysql+pymysql://")
    assert "charset=utf8mb4" in url
    assert select_one(url) == 1
    assert spec_for(orders()).dialect == "mysql"


@pytest.mark.postgresql
def test_a_secret_means_verified_tls_unless_told_otherwise(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n")
    monkeypatch.delenv("REPLICATION_DATABASE_TLS")
    monkeypatch.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(bundle))
    arn = secret(aws, "orders-tls", rds_credentials(POSTGRES_URL, "postgres"))
    monkeypatch.setenv("ORDERS_DATABASE_SECRET_ARN", arn)

    spec = spec_for(orders())

    assert spec.tls == DatabaseTls("verify", str(bundle.resolve()))
    url = url_for(orders())  # the relay's, migrations' and sync's
    assert url.endswith(f"?sslmode=verify-full&sslrootcert={quote_plus(str(bundle.resolve()))}")
    # The test server has no TLS: refused, on both paths, rather than reached in clear.
    with pytest.raises(psycopg2.OperationalError, match="REPLICATION_DATABASE_TLS=verify"):
        connect(spec)
    with pytest.raises(sa.exc.OperationalError, match="server does not support SSL"):
        select_one(url)


def test_a_master_user_secret_without_a_host_is_a_clear_error(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secret(aws, "orders-nohost", {"username": "u", "password": "p"})
    monkeypatch.setenv("ORDERS_DATABASE_SECRET_ARN", arn)
    monkeypatch.delenv("ORDERS_DATABASE_HOST", raising=False)

    with pytest.raises(ConfigurationError, match="host, port and dbname unless"):
        spec_for(orders())


def test_nothing_configured_names_both_variables(aws: MotoServer) -> None:
    with pytest.raises(ConfigurationError) as caught:
        spec_for(orders())
    assert "ORDERS_DATABASE_SECRET_ARN" in str(caught.value)
    assert "ORDERS_DATABASE_URL" in str(caught.value)


def test_a_manifest_may_name_its_secret_variable(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "orders" / "replication.yaml").read_text()
    text = text.replace(
        "url_env: ORDERS_DATABASE_URL",
        "url_env: ORDERS_DATABASE_URL\n  secret_arn_env: ORDERS_DB_SECRET",
    )
    text = text.replace("python_path: [../..]", f"python_path: [{ROOT}]")
    (tmp_path / "replication.yaml").write_text(text)

    assert load_manifest(tmp_path / "replication.yaml").database_secret_env == "ORDERS_DB_SECRET"


def test_the_password_is_quoted_in_a_url_built_from_a_secret() -> None:
    from replication.consumer.database import ConnectionSpec, url_of

    spec = ConnectionSpec(
        "postgresql", host="db", port=5432, user="a@b", password="p:/@?#", database="d"
    )

    assert url_of(spec) == "postgresql+psycopg2://a%40b:p%3A%2F%40%3F%23@db:5432/d"
    assert sa.make_url(url_of(spec)).password == "p:/@?#"


def test_a_payload_cap_that_is_not_a_positive_number_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from replication.consumer.wiring import ConsumerSettings

    for value in ("lots", "0", "-5"):
        monkeypatch.setenv("REPLICATION_PAYLOAD_MAX_BYTES", value)
        with pytest.raises(ConfigurationError, match="REPLICATION_PAYLOAD_MAX_BYTES must be"):
            ConsumerSettings.from_environment()
