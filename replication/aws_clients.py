"""Every boto3 client of the library, made in one place and configured alike.

- retries in botocore's ``standard`` mode (exponential back-off with jitter, a
  retry quota, throttling and transient errors retried), three attempts in all
  unless ``AWS_MAX_ATTEMPTS`` or a profile's ``max_attempts`` says otherwise;
- a connect timeout of :data:`CONNECT_TIMEOUT` seconds and a read timeout of
  :data:`READ_TIMEOUT` seconds, longer than SQS's longest long poll (20 s);
- the region, credentials and endpoint of the standard AWS configuration:
  ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>`` and a profile's
  ``endpoint_url`` are honoured by boto3 itself, so the same code talks to AWS,
  LocalStack or a moto server.

boto3 is imported when the first session or client is made, never by importing
this module, so a Lambda's cold start pays for it only on the path that needs it.
"""

from __future__ import annotations

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRY_MODE",
    "client",
    "client_config",
    "new_session",
]

from typing import TYPE_CHECKING, Any, Final, Literal, overload

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.client import BaseClient
    from botocore.config import Config
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

RETRY_MODE: Final = "standard"
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection: an endpoint that does not answer fails fast and is retried."""
READ_TIMEOUT = 30.0
"""Seconds to wait for a response; above 20 s, SQS's longest long poll (``WaitTimeSeconds``)."""


def client_config(*, max_attempts: int | None = None) -> Config:
    """The botocore configuration of every client: standard retries and both timeouts.

    ``max_attempts`` counts the first attempt (1: never retry); None leaves it to
    ``AWS_MAX_ATTEMPTS`` or the profile, else the standard mode's three.
    """
    from botocore.config import Config

    return Config(
        retries=(
            {"mode": RETRY_MODE}
            if max_attempts is None
            else {"mode": RETRY_MODE, "total_max_attempts": max_attempts}
        ),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def new_session() -> Session:
    """A boto3 session of the standard AWS configuration (environment, profiles, regions)."""
    import boto3

    return boto3.session.Session()


@overload
def client(
    service: Literal["sqs"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> SQSClient: ...
@overload
def client(
    service: Literal["sns"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> SNSClient: ...
@overload
def client(
    service: Literal["s3"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> S3Client: ...
@overload
def client(
    service: Literal["sts"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> STSClient: ...
@overload
def client(
    service: Literal["secretsmanager"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> SecretsManagerClient: ...
@overload
def client(
    service: Literal["rds"],
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> RDSClient: ...
@overload
def client(
    service: str,
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> BaseClient: ...
def client(
    service: str,
    session: Session | None = None,
    *,
    region: str | None = None,
    max_attempts: int | None = None,
) -> BaseClient:
    """A client of ``service`` from ``session`` (default: a new one), configured as above.

    ``region`` overrides the configured region; ``max_attempts`` as in :func:`client_config`.
    """
    maker: Any = session or new_session()  # the stubs type only literal service names
    made: BaseClient = maker.client(
        service, region_name=region, config=client_config(max_attempts=max_attempts)
    )
    return made
