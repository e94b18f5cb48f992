"""TLS of the project's database connections: one setting, and what each driver is told.

``REPLICATION_DATABASE_TLS`` says how every connection the project opens
(apply function, relay, migrations, backfill, reconcile, repair) is secured:

- ``verify``: encrypted, the server's certificate checked against the CA
  certificates in ``REPLICATION_DATABASE_CA_BUNDLE`` (a PEM file, such as RDS's
  ``global-bundle.pem``; unset, the system's, as Python's :mod:`ssl` finds
  them), and its name checked against the host connected to. PostgreSQL:
  ``sslmode=verify-full`` and ``sslrootcert``; MySQL/MariaDB: ``ssl_ca`` and
  ``ssl_check_hostname=true``.
- ``require``: encrypted, the certificate not checked. PostgreSQL:
  ``sslmode=require``; MySQL/MariaDB: ``ssl_check_hostname=false``.
- ``off``: the project asks for nothing; the URL's parameters and the driver's
  defaults hold (libpq's ``sslmode=prefer``, PyMySQL's likewise: TLS when the
  server offers it, unverified, else none).

Unset, it is ``verify`` when the connection is made on AWS's side: the
credentials come from a Secrets Manager secret, IAM authentication is on, or
the process is a Lambda function (``AWS_LAMBDA_FUNCTION_NAME``); ``off``
otherwise (a URL on a workstation or in CI). IAM authentication refuses
``off``: RDS accepts its tokens over TLS only.

A URL's own TLS parameters win: a PostgreSQL URL naming ``sslmode``, or a
MySQL URL naming any ``ssl_`` parameter, is taken as written; a PostgreSQL
URL's ``sslrootcert`` is kept. The parameters are URL query parameters, the
same for the apply function's DB-API connection (:func:`tls_parameters`,
:func:`pymysql_ssl`) and the SQLAlchemy engines (:func:`with_tls`).
"""

from __future__ import annotations

__all__ = [
    "CA_BUNDLE_ENV",
    "MODES",
    "PACKAGED_CA_BUNDLE",
    "TLS_ENV",
    "DatabaseTls",
    "ca_bundle_file",
    "database_tls",
    "explain_refusal",
    "pymysql_ssl",
    "tls_parameters",
    "with_tls",
]

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from replication.dialects import dialect_named
from replication.dialects.mysql import pymysql_ssl
from replication.errors import ConfigurationError

TLS_ENV = "REPLICATION_DATABASE_TLS"
CA_BUNDLE_ENV = "REPLICATION_DATABASE_CA_BUNDLE"
MODES = ("verify", "require", "off")
PACKAGED_CA_BUNDLE = "database-ca-bundle.pem"
"""Where ``replication package --database-ca-bundle`` puts a bundle in a function's
artifact (its root, the function's working directory)."""

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_TLS_WORDS = ("ssl", "tls", "certificate")  # in libpq's and PyMySQL's refusals


@dataclass(frozen=True)
class DatabaseTls:
    """How connections are secured; in ``verify`` mode, the CA file that vouches for servers."""

    mode: str = "off"
    ca_file: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(
                f"{TLS_ENV}={self.mode!r}: use verify (certificate and host name checked), "
                "require (encrypted, not checked) or off"
            )
        if self.mode == "verify" and not self.ca_file:
            raise ConfigurationError(f"{TLS_ENV}=verify needs a CA file ({CA_BUNDLE_ENV})")


def ca_bundle_file(path: str, *, named_by: str = CA_BUNDLE_ENV) -> str:
    """The absolute path of the PEM bundle ``path``; ConfigurationError when it is not one."""
    found = Path(path).expanduser().resolve()
    try:
        holds_certificate = _PEM_CERTIFICATE in found.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{named_by} names {path}, which cannot be read ({exc.strerror or exc}): give the "
            "PEM file of the CA certificates that sign the database server's certificate (for "
            f"RDS its global-bundle.pem; replication package --database-ca-bundle ships one "
            f"in a function as {PACKAGED_CA_BUNDLE}), or set {TLS_ENV}=require or off"
        ) from None
    if not holds_certificate:
        raise ConfigurationError(
            f"{named_by} names {path}, which holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    return str(found)


def _system_ca_file() -> str:
    import ssl  # only when verifying without a bundle

    cafile = ssl.get_default_verify_paths().cafile  # None when the file does not exist
    if not cafile:
        raise ConfigurationError(
            f"{TLS_ENV}=verify checks the database server's certificate, and no CA "
            f"certificates were given: set {CA_BUNDLE_ENV} to a PEM bundle (for RDS its "
            f"global-bundle.pem), or SSL_CERT_FILE to the system's, or set {TLS_ENV}=require "
            "(encrypted, not verified) or off"
        )
    return cafile


def database_tls(
    *,
    from_secret: bool = False,
    iam_auth: bool = False,
    environ: Mapping[str, str] | None = None,
) -> DatabaseTls:
    """The TLS ``environ`` (default: the process's) asks for, by the rule in this module's doc.

    ``from_secret``: the credentials come from a Secrets Manager secret.
    """
    env = os.environ if environ is None else environ
    given = env.get(TLS_ENV, "").strip().lower()
    on_aws = from_secret or iam_auth or bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
    mode = given or ("verify" if on_aws else "off")
    if iam_auth and mode == "off":
        raise ConfigurationError(
            f"REPLICATION_DATABASE_IAM_AUTH needs TLS (RDS takes IAM tokens over TLS only): "
            f"set {TLS_ENV}=verify or require"
        )
    if mode != "verify":
        return DatabaseTls(mode)  # refuses a mode it does not know
    bundle = env.get(CA_BUNDLE_ENV, "").strip()
    return DatabaseTls(mode, ca_bundle_file(bundle) if bundle else _system_ca_file())


def tls_parameters(dialect: str, given: Mapping[str, str], tls: DatabaseTls) -> dict[str, str]:
    """The URL parameters ``tls`` adds to a URL's own ``given``; none where they name their own."""
    if tls.mode == "off":
        return {}
    return dialect_named(dialect).tls_parameters(given, tls.mode, tls.ca_file)


def with_tls(url: str, dialect: str, tls: DatabaseTls) -> str:
    """``url`` with the parameters ``tls`` adds (:func:`tls_parameters`); others unchanged."""
    query = urlsplit(url).query
    added = tls_parameters(dialect, dict(parse_qsl(query)), tls)
    if not added:
        return url
    separator = "&" if query else ("" if url.endswith("?") else "?")
    return url + separator + urlencode(added, safe="/", quote_via=quote)


def explain_refusal(exc: BaseException, tls: DatabaseTls) -> None:
    """Name, in a driver's refusal to connect over TLS, the setting that asked for TLS.

    For an error raised while connecting with parameters ``tls`` added; the
    driver's exception keeps its type (what the apply function's verdicts read).
    """
    if tls.mode == "off" or not exc.args or not isinstance(exc.args[-1], str):
        return
    text = exc.args[-1]
    if not any(word in text.lower() for word in _TLS_WORDS):
        return
    if tls.mode == "verify":
        wanted = (
            "the server must offer TLS with a certificate for the host name connected to, "
            f"signed by a CA in {tls.ca_file} ({CA_BUNDLE_ENV})"
        )
    else:
        wanted = "the server must offer TLS"
    exc.args = (
        *exc.args[:-1],
        f"{text.rstrip()} ({TLS_ENV}={tls.mode}: {wanted}; {TLS_ENV}=off connects to a "
        "local server without TLS)",
    )
