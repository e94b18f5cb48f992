"""TLS of database connections: verified by default on AWS, told the same to every driver.

- The rule: ``REPLICATION_DATABASE_TLS`` when set, else ``verify`` for credentials
  from a secret, with IAM authentication and in a Lambda function, else ``off``
  (read from a given environment, no server needed).
- What libpq (through psycopg2 and psycopg 3) and PyMySQL are told in each mode,
  on the apply function's path and on the SQLAlchemy path, read back from
  SQLAlchemy's own ``create_connect_args``; a URL's own TLS parameters win.
- The test servers, which have no TLS: ``verify`` and ``require`` are refused with
  the setting named, ``off`` connects.
- Throwaway PostgreSQL and MariaDB servers with TLS and a test CA
  (tests/tls_servers.py): ``verify`` connects with the CA that signed the
  server's certificate and refuses another CA and a host name the certificate
  does not name; ``require`` connects, encrypted, whatever the certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import psycopg
import psycopg2
import pymysql
import pytest
import sqlalchemy as sa

from replication.consumer.database import ConnectionSpec, connect, spec_from_url, url_of
from replication.dbtls import DatabaseTls, database_tls, pymysql_ssl, tls_parameters
from replication.dburl import engine_url
from replication.errors import ConfigurationError
from replication.manifest import load_manifests
from replication.topology.cloudformation import render_templates
from tests import tls_servers
from tests.databases import MYSQL_URL, POSTGRES_URL
from tests.paths import ROOT

# What the drivers raise when they refuse to connect (the apply function's verdicts read them).
REFUSED = (psycopg2.OperationalError, psycopg.OperationalError, pymysql.err.OperationalError)
PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
POSTGRESQL_DRIVERS = ("postgresql+psycopg2", "postgresql+psycopg")


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    path = tmp_path / "bundle.pem"
    path.write_text(PEM)
    return str(path.resolve())


@pytest.fixture
def tls_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with no TLS setting and no Lambda of its own."""
    for name in (
        "REPLICATION_DATABASE_TLS",
        "REPLICATION_DATABASE_CA_BUNDLE",
        "REPLICATION_DATABASE_IAM_AUTH",
        "AWS_LAMBDA_FUNCTION_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls_servers.Certificates:
    if reason := tls_servers.missing("certificates"):
        pytest.skip(f"no test certificates: {reason}")
    return tls_servers.certificates(tmp_path_factory.mktemp("certificates"))


def connect_args(url: str) -> dict[str, Any]:
    """What SQLAlchemy passes to the driver's connect() for ``url``, without connecting."""
    engine = sa.create_engine(url)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)  # psycopg 3's adapters
    return dict(kwargs)


def select_one(spec: ConnectionSpec) -> Any:
    connection = connect(spec)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]
    finally:
        connection.close()


# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("why", "environ", "from_secret", "iam_auth"),
    [
        ("credentials from a secret", {}, True, False),
        ("IAM authentication", {}, False, True),
        ("a Lambda function", {"AWS_LAMBDA_FUNCTION_NAME": "dev-orders-apply"}, False, False),
    ],
)
def test_verify_is_the_default_on_aws(
    bundle: str, why: str, environ: dict[str, str], from_secret: bool, iam_auth: bool
) -> None:
    environ = {**environ, "REPLICATION_DATABASE_CA_BUNDLE": bundle}

    tls = database_tls(from_secret=from_secret, iam_auth=iam_auth, environ=environ)

    assert tls == DatabaseTls("verify", bundle), why


def test_a_url_elsewhere_is_taken_as_it_says_by_default(bundle: str) -> None:
    environ = {"REPLICATION_DATABASE_CA_BUNDLE": bundle}
    assert database_tls(environ=environ) == DatabaseTls("off")
    assert tls_parameters("postgresql", {}, DatabaseTls("off")) == {}
    assert tls_parameters("mysql", {}, DatabaseTls("off")) == {}


def test_the_setting_wins_over_the_default(bundle: str) -> None:
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "f", "REPLICATION_DATABASE_CA_BUNDLE": bundle}
    assert database_tls(
        from_secret=True, environ={**lambda_env, "REPLICATION_DATABASE_TLS": "off"}
    ) == DatabaseTls("off")
    assert database_tls(
        from_secret=True, environ={**lambda_env, "REPLICATION_DATABASE_TLS": "require"}
    ) == DatabaseTls("require")
    assert database_tls(
        environ={"REPLICATION_DATABASE_TLS": " Verify ", "REPLICATION_DATABASE_CA_BUNDLE": bundle}
    ) == DatabaseTls("verify", bundle)


def test_an_unknown_setting_names_the_variable_and_the_modes() -> None:
    with pytest.raises(ConfigurationError) as caught:
        database_tls(environ={"REPLICATION_DATABASE_TLS": "prefer"})
    message = str(caught.value)
    assert "REPLICATION_DATABASE_TLS='prefer'" in message
    assert all(mode in message for mode in ("verify", "require", "off"))


def test_iam_authentication_refuses_tls_off() -> None:
    with pytest.raises(ConfigurationError, match=r"IAM_AUTH needs TLS.*=verify or require"):
        database_tls(iam_auth=True, environ={"REPLICATION_DATABASE_TLS": "off"})


def test_a_ca_bundle_that_is_missing_or_no_pem_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "global-bundle.pem"
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate")
    for path, says in (
        (missing, "cannot be read"),
        (tmp_path, "cannot be read"),
        (text, "holds no PEM certificate"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            database_tls(from_secret=True, environ={"REPLICATION_DATABASE_CA_BUNDLE": str(path)})
        assert f"REPLICATION_DATABASE_CA_BUNDLE names {path}" in str(caught.value)
        assert says in str(caught.value)
    # Only verify reads the bundle: require and off never fail on it.
    environ = {
        "REPLICATION_DATABASE_CA_BUNDLE": str(missing),
        "REPLICATION_DATABASE_TLS": "require",
    }
    assert database_tls(from_secret=True, environ=environ) == DatabaseTls("require")


def test_a_relative_bundle_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "database-ca-bundle.pem").write_text(PEM)
    monkeypatch.chdir(tmp_path)  # a Lambda function's working directory is its task root

    environ = {
        "AWS_LAMBDA_FUNCTION_NAME": "dev-orders-apply",
        "REPLICATION_DATABASE_CA_BUNDLE": "database-ca-bundle.pem",
    }

    tls = database_tls(environ=environ)

    assert tls.ca_file == str(tmp_path.resolve() / "database-ca-bundle.pem")


def test_without_a_bundle_verify_trusts_the_systems_ca_file() -> None:
    system = ssl.get_default_verify_paths().cafile
    if system is None:
        pytest.skip("this system has no default CA file")

    assert database_tls(from_secret=True, environ={}) == DatabaseTls("verify", system)


def test_without_a_bundle_or_a_system_ca_file_verify_says_what_to_set(
    tls_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tls_env.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))  # where Python looks first

    with pytest.raises(ConfigurationError) as caught:
        database_tls(from_secret=True)

    assert "set REPLICATION_DATABASE_CA_BUNDLE to a PEM bundle" in str(caught.value)
    assert "REPLICATION_DATABASE_TLS=require" in str(caught.value)


def test_every_rendered_function_is_told_the_stacks_tls_verify_by_default() -> None:
    template = render_templates(load_manifests([ROOT / "examples"]))["default"]
    parameters = template["Parameters"]
    functions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]

    assert parameters["DatabaseTls"]["Default"] == "verify"
    assert parameters["DatabaseTls"]["AllowedValues"] == ["verify", "require", "off"]
    assert parameters["DatabaseCaBundle"]["Default"] == "database-ca-bundle.pem"
    assert len(functions) >= 2  # relays and apply functions
    for function in functions:
        environment = function["Environment"]["Variables"]
        assert environment["REPLICATION_DATABASE_TLS"] == {"Ref": "DatabaseTls"}
        assert environment["REPLICATION_DATABASE_CA_BUNDLE"] == {"Ref": "DatabaseCaBundle"}


# -- what each driver is told --------------------------------------------------------------


@pytest.mark.parametrize("driver", POSTGRESQL_DRIVERS)
@pytest.mark.parametrize(
    ("mode", "told"),
    [
        ("verify", {"sslmode": "verify-full", "sslrootcert": "<bundle>"}),
        ("require", {"sslmode": "require"}),
        ("off", {}),
    ],
)
def test_libpq_is_told_sslmode_and_the_bundle_on_both_paths(
    tls_env: pytest.MonkeyPatch, bundle: str, driver: str, mode: str, told: dict[str, str]
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", mode)
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", bundle)
    told = {k: bundle if v == "<bundle>" else v for k, v in told.items()}
    url = f"{driver}://orders@db.internal:5432/orders?options=-csearch_path%3Dorders"
    tls = database_tls()

    # The apply function: the URL's query plus these, passed to libpq as they are.
    assert tls_parameters("postgresql", dict(spec_from_url(url).options), tls) == told
    # The relay, migrations and sync: SQLAlchemy hands libpq the same.
    args = connect_args(engine_url(url))
    assert {k: v for k, v in args.items() if k.startswith("ssl")} == told
    assert args["options"] == "-csearch_path=orders"


@pytest.mark.parametrize(
    ("mode", "told"),
    [
        ("verify", {"ca": "<bundle>", "check_hostname": True}),
        ("require", {"check_hostname": False}),
        ("off", None),
    ],
)
def test_pymysql_is_told_the_same_ssl_on_both_paths(
    tls_env: pytest.MonkeyPatch, bundle: str, mode: str, told: dict[str, Any] | None
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", mode)
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", bundle)
    if told is not None:
        told = {k: bundle if v == "<bundle>" else v for k, v in told.items()}
    url = "mysql://orders@db.internal:3306/orders"

    apply_path = pymysql_ssl(tls_parameters("mysql", {}, database_tls()))
    engine_path = connect_args(engine_url(url)).get("ssl")

    assert apply_path == engine_path == told
    assert engine_url(url).startswith("mysql+pymysql://orders@db.internal:3306/orders?charset")


def test_a_spec_from_a_secret_carries_its_tls_into_the_url(bundle: str) -> None:
    spec = ConnectionSpec("postgresql", host="db", port=5432, user="u", password="p", database="d")
    verify = replace(spec, tls=DatabaseTls("verify", bundle))
    mysql = ConnectionSpec("mysql", host="db", user="u", tls=DatabaseTls("require"))

    assert url_of(verify) == (
        "postgresql+psycopg2://u:p@db:5432/d?sslmode=verify-full&sslrootcert=" + quote_plus(bundle)
    )
    assert url_of(mysql) == "mysql+pymysql://u@db/?ssl_check_hostname=false&charset=utf8mb4"


def test_a_urls_own_tls_parameters_win(tls_env: pytest.MonkeyPatch, bundle: str) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", bundle)
    for url in (
        "postgresql+psycopg2://u@h/db?sslmode=disable",
        "postgresql+psycopg2://u@h/db?sslmode=verify-ca&sslrootcert=/etc/own.pem",
        "mysql+pymysql://u@h/db?ssl_ca=/etc/own.pem",
        "mysql+pymysql://u@h/db?ssl_check_hostname=false",
    ):
        assert engine_url(url) == url
    # A root certificate of the URL's own is kept; the mode is still asked for.
    assert engine_url("postgresql+psycopg2://u@h/db?sslrootcert=/etc/own.pem") == (
        "postgresql+psycopg2://u@h/db?sslrootcert=/etc/own.pem&sslmode=verify-full"
    )


def test_sqlite_is_left_alone(tls_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(tmp_path / "absent.pem"))

    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"
    assert select_one(spec_from_url(f"sqlite:///{tmp_path / 'x.db'}")) == 1


# -- the test servers, which have no TLS --------------------------------------------------


def _local(driver: str) -> str:
    if driver == "pymysql":
        return MYSQL_URL.replace("mysql://", "mysql+pymysql://", 1)
    return POSTGRES_URL.replace("postgresql://", f"{driver}://", 1)


LOCAL = [
    pytest.param("postgresql+psycopg2", marks=pytest.mark.postgresql),
    pytest.param("postgresql+psycopg", marks=pytest.mark.postgresql),
    pytest.param("pymysql", marks=pytest.mark.mysql),
]


@pytest.mark.parametrize("driver", LOCAL)
@pytest.mark.parametrize("mode", ["verify", "require"])
def test_a_server_without_tls_is_refused_with_the_setting_named(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, driver: str, mode: str
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", mode)
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.ca))

    with pytest.raises(REFUSED) as caught:
        select_one(spec_from_url(_local(driver)))
    message = str(caught.value)
    assert "SSL" in message
    assert f"REPLICATION_DATABASE_TLS={mode}: the server must offer TLS" in message
    assert "REPLICATION_DATABASE_TLS=off connects to a local server without TLS" in message

    engine = sa.create_engine(engine_url(_local(driver)), poolclass=sa.pool.NullPool)
    with pytest.raises(sa.exc.OperationalError, match="SSL"):
        engine.connect()
    engine.dispose()


@pytest.mark.parametrize("driver", LOCAL)
def test_a_server_without_tls_is_reached_with_tls_off(
    tls_env: pytest.MonkeyPatch, driver: str
) -> None:
    tls_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "dev-orders-apply")
    tls_env.setenv("REPLICATION_DATABASE_TLS", "off")

    assert select_one(spec_from_url(_local(driver))) == 1
    engine = sa.create_engine(engine_url(_local(driver)), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    engine.dispose()


@pytest.mark.parametrize("driver", LOCAL)
def test_a_lambda_function_does_not_reach_a_server_without_tls_by_default(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, driver: str
) -> None:
    tls_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "dev-orders-apply")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.ca))

    with pytest.raises(REFUSED, match="REPLICATION_DATABASE_TLS=verify"):
        select_one(spec_from_url(_local(driver)))


@pytest.mark.postgresql
def test_a_urls_own_sslmode_reaches_a_server_without_tls_even_under_verify(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.ca))
    url = _local("postgresql+psycopg2")
    url += ("&" if "?" in url else "?") + "sslmode=disable"

    assert select_one(spec_from_url(url)) == 1


# -- servers with TLS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_postgresql(certs: tls_servers.Certificates) -> Iterator[int]:
    if reason := tls_servers.missing("postgresql"):
        pytest.skip(f"no PostgreSQL with TLS: {reason}")
    with tls_servers.postgresql(certs) as port:
        yield port


@pytest.fixture(scope="module")
def tls_mariadb(certs: tls_servers.Certificates) -> Iterator[int]:
    if reason := tls_servers.missing("mariadb"):
        pytest.skip(f"no MariaDB with TLS: {reason}")
    with tls_servers.mariadb(certs) as port:
        yield port


def _encrypted(connection: Any, dialect: str) -> bool:
    cursor = connection.cursor()
    if dialect == "postgresql":
        cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(cursor.fetchone()[0])
    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return bool(cursor.fetchone()[1])


@pytest.fixture(params=[*POSTGRESQL_DRIVERS, "pymysql"])
def tls_server(request: pytest.FixtureRequest) -> tuple[str, str, int]:
    """A driver, its dialect, and the port of a server of that dialect with TLS."""
    driver: str = request.param
    if driver == "pymysql":
        return driver, "mysql", request.getfixturevalue("tls_mariadb")
    return driver, "postgresql", request.getfixturevalue("tls_postgresql")


def _url(server: tuple[str, str, int], host: str) -> str:
    driver, dialect, port = server
    if dialect == "mysql":
        return f"mysql+pymysql://root@{host}:{port}/mysql"
    return f"{driver}://postgres@{host}:{port}/postgres"


def test_verify_connects_when_the_bundle_vouches_for_the_servers_certificate(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, tls_server: tuple[str, str, int]
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.ca))
    url = _url(tls_server, "localhost")

    connection = connect(spec_from_url(url))
    try:
        assert _encrypted(connection, tls_server[1])
    finally:
        connection.close()
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    with engine.connect() as through_sqlalchemy:
        assert _encrypted(through_sqlalchemy.connection.dbapi_connection, tls_server[1])
    engine.dispose()


def test_verify_refuses_a_certificate_another_ca_signed(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, tls_server: tuple[str, str, int]
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.other_ca))
    url = _url(tls_server, "localhost")

    with pytest.raises(REFUSED) as caught:
        connect(spec_from_url(url))
    assert "certificate verify failed" in str(caught.value)
    assert f"signed by a CA in {certs.other_ca}" in str(caught.value)
    engine = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        engine.connect()
    engine.dispose()


def test_verify_refuses_a_host_name_the_certificate_does_not_name(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, tls_server: tuple[str, str, int]
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "verify")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.ca))
    url = _url(tls_server, "127.0.0.1")  # the certificate names localhost only

    with pytest.raises(REFUSED) as caught:
        connect(spec_from_url(url))
    message = str(caught.value).lower()
    assert "127.0.0.1" in message
    assert "does not match" in message or "mismatch" in message
    assert "replication_database_tls=verify" in message


def test_require_encrypts_without_checking_the_certificate(
    tls_env: pytest.MonkeyPatch, certs: tls_servers.Certificates, tls_server: tuple[str, str, int]
) -> None:
    tls_env.setenv("REPLICATION_DATABASE_TLS", "require")
    tls_env.setenv("REPLICATION_DATABASE_CA_BUNDLE", str(certs.other_ca))  # not read
    url = _url(tls_server, "127.0.0.1")

    connection = connect(spec_from_url(url))
    try:
        assert _encrypted(connection, tls_server[1])
    finally:
        connection.close()
