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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from replication.dbtls import (
    DatabaseTls,
    database_tls,
    explain_refusal,
    tls_parameters,
)
from replication.dburl import dialect_of, driver_of
from replication.dialects import dialect_named, registered
from replication.dialects.postgresql import POSTGRESQL
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
        where = f"{self.host}:{self.port}" if _has_server(self.dialect) else self.database
        return f"ConnectionSpec({self.dialect}+{self.driver} {self.user}@{where}/{self.database})"


def _has_server(dialect: str) -> bool:
    """Whether ``dialect`` is reached over the network (an unknown one is taken to be)."""
    try:
        return dialect_named(dialect).has_server
    except ConfigurationError:
        return True


def spec_from_url(url: str) -> ConnectionSpec:
    """A spec from a SQLAlchemy-style URL (``postgresql://``, ``mysql+pymysql://``, ``sqlite:///``)."""
    scheme = url.partition("://")[0]
    dialect, driver = dialect_of(url), driver_of(url)
    if dialect is None or driver is None:
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme!r}; use postgresql:// (or postgres://, "
            "+psycopg2, +psycopg), mysql:// (or mariadb://, +pymysql) or sqlite:///"
        )
    if not _has_server(dialect):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return ConnectionSpec(dialect, database=path.split("?", 1)[0] or ":memory:")
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
        # Another engine is taken for PostgreSQL, RDS's default.
        dialect = next((d for d in registered() if engine in d.rds_engines), POSTGRESQL).name
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
        from replication.aws_clients import client  # boto3: only on this path, once per cold start

        secret = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
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
    if not _has_server(spec.dialect):
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
    dialect = dialect_named(spec.dialect)
    if not dialect.has_server:
        return f"{dialect.name}:///{spec.database}"
    credentials = quote(spec.user, safe="")
    if spec.password:
        credentials += ":" + quote(spec.password, safe="")
    port = f":{spec.port}" if spec.port else ""
    options = list(spec.options)
    options += tls_parameters(spec.dialect, dict(options), _tls_of(spec)).items()
    given = {k for k, _ in options}
    options += [(k, v) for k, v in dialect.driver_options(spec.driver).items() if k not in given]
    query = f"?{urlencode(options)}" if options else ""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{dialect.name}+{spec.driver}://{credentials}@{host}{port}/{spec.database}{query}"


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
    from replication.aws_clients import client

    token: str = client("rds", region=spec.region).generate_db_auth_token(
        DBHostname=spec.host, Port=spec.port or _default_port(spec), DBUsername=spec.user
    )
    return token


def _default_port(spec: ConnectionSpec) -> int:
    return dialect_named(spec.dialect).default_port


def connect(spec: ConnectionSpec, *, connect_timeout: int = 5) -> Any:
    """A new DB-API connection, not in autocommit mode."""
    dialect = dialect_named(spec.dialect)
    if not dialect.has_server:
        return dialect.connect(spec)
    tls = _tls_of(spec)
    options = dict(spec.options)
    added = tls_parameters(spec.dialect, options, tls)
    password = _iam_token(spec) if spec.iam_auth else spec.password
    try:
        return dialect.connect(
            spec,
            password=password,
            options={**options, **added},
            connect_timeout=connect_timeout,
        )
    except Exception as exc:
        if added:
            explain_refusal(exc, tls)
        raise
