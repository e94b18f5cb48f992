"""A service's database: where it is, and the consumer's plain DB-API connection to it.

Where a service's credentials come from, in order (:func:`spec_for`), the same
for every deployed function (apply, relay, scheduled reconcile) and command:

1. the Secrets Manager secret whose ARN is in ``<SERVICE>_DATABASE_SECRET_ARN``
   (the manifest's ``database.secret_arn_env``), read once per cold start. Both
   shapes RDS creates are read: the "credentials for an RDS database" secret
   (``engine``, ``host``, ``port``, ``username``, ``password``, ``dbname``), and
   the one RDS manages for its master user (``username`` and ``password``
   only), whose host, port, database name and engine then come from
   ``<SERVICE>_DATABASE_HOST``, ``_PORT``, ``_NAME`` and ``_ENGINE``;
2. the URL in the environment variable the manifest names (``database.url_env``),
   for local runs.

With ``REPLICATION_DATABASE_IAM_AUTH=1`` the password is an RDS IAM
authentication token generated for each new connection (TLS required). RDS
Proxy is a plain endpoint to this module: give its host name. No SQLAlchemy.

TLS follows ``REPLICATION_DATABASE_TLS`` (:mod:`replication.dbtls`): verified
by default for credentials from a secret, with IAM authentication and in a
Lambda function; as the URL says for a URL elsewhere.

PostgreSQL is reached through psycopg2 or psycopg 3: ``postgresql+psycopg2://``
and ``postgresql+psycopg://`` name one, plain ``postgresql://`` (and a secret)
means psycopg2 when it is installed, else psycopg 3.
"""

from __future__ import annotations

__all__ = [
    "ConnectionSpec",
    "connect",
    "spec_for",
    "spec_from_secret",
    "spec_from_url",
    "url_for",
    "url_of",
]

import json
import os
import sqlite3
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from replication.dbtls import (
    DatabaseTls,
    database_tls,
    explain_refusal,
    pymysql_ssl,
    tls_parameters,
)
from replication.dburl import dialect_of, driver_of
from replication.errors import ConfigurationError

if TYPE_CHECKING:
    from replication.manifest import Manifest


@dataclass(frozen=True)
class ConnectionSpec:
    """Where and as whom to connect."""

    dialect: str
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = ""
    database: str = ""
    options: tuple[tuple[str, str], ...] = ()
    iam_auth: bool = False
    region: str | None = None
    driver: str = ""
    """The DB-API module: ``psycopg2``, ``psycopg``, ``pymysql`` or ``sqlite3``; left
    empty, the one the dialect's plain URL means (:func:`replication.dburl.driver_of`)."""
    tls: DatabaseTls | None = None
    """How connections are secured; None: as the environment says when connecting
    (:func:`replication.dbtls.database_tls`, for a URL)."""

    def __post_init__(self) -> None:
        if not self.driver:
            # The dialect's name is also its plain URL scheme.
            object.__setattr__(self, "driver", driver_of(f"{self.dialect}://") or "")

    def __repr__(self) -> str:
        # Never show the password.
        where = self.database if self.dialect == "sqlite" else f"{self.host}:{self.port}"
        return f"ConnectionSpec({self.dialect}+{self.driver} {self.user}@{where}/{self.database})"


def spec_from_url(url: str) -> ConnectionSpec:
    """A spec from a SQLAlchemy-style URL (``postgresql://``, ``mysql+pymysql://``, ``sqlite:///``)."""
    scheme = url.partition("://")[0]
    dialect, driver = dialect_of(url), driver_of(url)
    if dialect is None or driver is None:
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme!r}; use postgresql:// (or postgres://, "
            "+psycopg2, +psycopg), mysql:// (or mariadb://, +pymysql) or sqlite:///"
        )
    if dialect == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return ConnectionSpec("sqlite", database=path.split("?", 1)[0] or ":memory:")
    parts = urlsplit(url)
    return ConnectionSpec(
        dialect,
        driver=driver,
        host=parts.hostname or "127.0.0.1",
        port=parts.port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        options=tuple(parse_qsl(parts.query)),
    )


def spec_from_secret(secret: str, defaults: dict[str, str] | None = None) -> ConnectionSpec:
    """A spec from a Secrets Manager secret string in either of RDS's formats.

    ``defaults`` (``host``, ``port``, ``dbname``, ``engine``) fill what the secret
    lacks: a secret RDS manages for its master user holds only the credentials.
    """
    try:
        document = {**(defaults or {}), **json.loads(secret)}
        engine = str(document.get("engine") or "postgres").lower()
        dialect = "mysql" if engine in ("mysql", "mariadb", "aurora-mysql") else "postgresql"
        if not document.get("host"):
            raise KeyError("host")
        return ConnectionSpec(
            dialect,
            host=str(document["host"]),
            port=int(document["port"]) if document.get("port") else None,
            user=str(document["username"]),
            password=str(document.get("password", "")),
            database=str(document.get("dbname") or document.get("database") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(
            "the database secret must be a JSON object with username and password, and "
            "host, port and dbname unless the function's environment gives them (the RDS "
            f"formats); {type(exc).__name__}: {exc}"
        ) from None


def _secret_defaults(secret_env: str) -> dict[str, str]:
    """Host, port, database name and engine set beside a master-user secret's ARN."""
    stem = secret_env.removesuffix("_SECRET_ARN")
    found = {
        key: os.environ.get(f"{stem}_{suffix}", "")
        for key, suffix in (("host", "HOST"), ("port", "PORT"), ("dbname", "NAME"))
    }
    found["engine"] = os.environ.get(f"{stem}_ENGINE", "")
    return {k: v for k, v in found.items() if v}


def spec_from_environment(url_env: str, secret_env: str) -> ConnectionSpec:
    """The spec the environment configures: a secret's ARN (``secret_env``) or a URL."""
    arn = os.environ.get(secret_env)
    if arn:
        import boto3  # only on this path, and only once per cold start

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        spec = spec_from_secret(secret, _secret_defaults(secret_env))
    else:
        url = os.environ.get(url_env)
        if not url:
            raise ConfigurationError(
                f"no database configured: set {secret_env} (a Secrets Manager secret's ARN) "
                f"or {url_env} (a URL)"
            )
        spec = spec_from_url(url)
    if os.environ.get("REPLICATION_DATABASE_IAM_AUTH", "").lower() in ("1", "true", "yes"):
        spec = replace(spec, iam_auth=True, region=os.environ.get("AWS_REGION"))
    if spec.dialect == "sqlite":
        return spec
    return replace(spec, tls=database_tls(from_secret=bool(arn), iam_auth=spec.iam_auth))


def spec_for(manifest: Manifest) -> ConnectionSpec:
    """``manifest``'s service database, from its secret's ARN or its URL variable."""
    return spec_from_environment(manifest.database_url_env, manifest.database_secret_env)


def _tls_of(spec: ConnectionSpec) -> DatabaseTls:
    return spec.tls or database_tls(iam_auth=spec.iam_auth)


def url_of(spec: ConnectionSpec) -> str:
    """A SQLAlchemy URL (driver named, TLS parameters in it) for ``spec``; the password is
    in it: never log it."""
    if spec.dialect == "sqlite":
        return f"sqlite:///{spec.database}"
    scheme = "postgresql" if spec.dialect == "postgresql" else "mysql"
    credentials = quote(spec.user, safe="")
    if spec.password:
        credentials += ":" + quote(spec.password, safe="")
    port = f":{spec.port}" if spec.port else ""
    options = list(spec.options)
    options += tls_parameters(spec.dialect, dict(options), _tls_of(spec)).items()
    if spec.driver == "pymysql" and not any(k == "charset" for k, _ in options):
        options.append(("charset", "utf8mb4"))
    query = f"?{urlencode(options)}" if options else ""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{scheme}+{spec.driver}://{credentials}@{host}{port}/{spec.database}{query}"


def url_for(manifest: Manifest) -> str:
    """``manifest``'s database URL: built from its secret when one is set, else its variable."""
    if os.environ.get(manifest.database_secret_env):
        spec = spec_for(manifest)
        if spec.iam_auth:
            raise ConfigurationError(
                "IAM authentication is supported by the apply function only; give the relay, "
                "backfill and reconcile a password in the secret"
            )
        return url_of(spec)
    return manifest.database_url()


def _iam_token(spec: ConnectionSpec) -> str:
    import boto3

    client = boto3.client("rds", region_name=spec.region)
    token: str = client.generate_db_auth_token(
        DBHostname=spec.host, Port=spec.port or _default_port(spec), DBUsername=spec.user
    )
    return token


def _default_port(spec: ConnectionSpec) -> int:
    return 5432 if spec.dialect == "postgresql" else 3306


def connect(spec: ConnectionSpec, *, connect_timeout: int = 5) -> Any:
    """A new DB-API connection, not in autocommit mode."""
    if spec.dialect == "sqlite":
        connection = sqlite3.connect(spec.database, timeout=30)
        # Python's default isolation level opens a transaction before each write.
        connection.execute("PRAGMA journal_mode=WAL")
        return connection
    tls = _tls_of(spec)
    options = dict(spec.options)
    added = tls_parameters(spec.dialect, options, tls)
    password = _iam_token(spec) if spec.iam_auth else spec.password
    try:
        return _connect_server(spec, password, {**options, **added}, connect_timeout)
    except Exception as exc:
        if added:
            explain_refusal(exc, tls)
        raise


def _connect_server(
    spec: ConnectionSpec, password: str, options: dict[str, str], connect_timeout: int
) -> Any:
    if spec.dialect == "postgresql":
        # The URL's query is libpq parameters (options=-csearch_path%3D..., sslmode...),
        # which both drivers pass on as they are.
        options.setdefault("connect_timeout", str(connect_timeout))
        options.setdefault("application_name", "replication-consumer")
        params: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port or 5432,
            "user": spec.user or None,
            "password": password or None,
            "dbname": spec.database or None,
            **options,
        }
        if spec.driver == "psycopg":
            import psycopg

            # No server-side prepared statements, as with psycopg2: poolers in
            # transaction mode (PgBouncer, RDS Proxy) do not keep them between
            # transactions.
            return psycopg.connect(prepare_threshold=None, **params)
        import psycopg2

        return psycopg2.connect(**params)
    import pymysql

    # Of the URL's query, only its TLS parameters (ssl_ca, ...), read as SQLAlchemy does.
    ssl = pymysql_ssl(options)
    return pymysql.connect(
        host=spec.host,
        port=spec.port or 3306,
        user=spec.user,
        password=password,
        database=spec.database or None,
        charset="utf8mb4",
        connect_timeout=connect_timeout,
        autocommit=False,
        **({"ssl": ssl} if ssl else {}),
    )
