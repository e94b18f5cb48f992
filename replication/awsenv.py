"""Where the standard AWS configuration points, and what a botocore error says.

boto3 is imported only when a session is asked for, so importing this module
costs nothing on a Lambda's cold path. Clients come from
:mod:`replication.aws_clients`.
"""

from __future__ import annotations

__all__ = ["AwsLocation", "aws_errors", "error_code", "http_status", "locate"]

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replication.aws_clients import client, new_session
from replication.errors import ConfigurationError, UnreachableError

if TYPE_CHECKING:
    from boto3.session import Session


@dataclass(frozen=True)
class AwsLocation:
    """A boto3 session with the region, account and partition it works in."""

    session: Session
    region: str
    account: str
    partition: str


def locate() -> AwsLocation:
    """The session, region, account and partition of the standard AWS configuration."""
    session = new_session()
    region = session.region_name
    if not region:
        raise ConfigurationError(
            "no AWS region configured: set AWS_REGION or AWS_DEFAULT_REGION, or use a profile"
        )
    with aws_errors("finding the AWS account (sts get-caller-identity)"):
        account = client("sts", session).get_caller_identity()["Account"]
    return AwsLocation(session, region, account, session.get_partition_for_region(region))


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL") or "the AWS endpoint"


_NO_ACCESS = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
}


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore's missing credentials, unreachable endpoints and refusals into our errors.

    ``doing`` completes the message ("reading queue X"). Other ClientErrors pass through.
    """
    from botocore import exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise UnreachableError(
            f"no AWS credentials while {doing}: set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY ({exc})"
        ) from exc
    except bx.NoRegionError as exc:
        raise ConfigurationError(
            f"no AWS region while {doing}: set AWS_REGION or AWS_DEFAULT_REGION"
        ) from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise UnreachableError(f"{_endpoint()} does not answer while {doing}: {exc}") from exc
    except bx.ClientError as exc:
        if error_code(exc) in _NO_ACCESS:
            raise UnreachableError(
                f"AWS refused the request while {doing}: {exc} (check the credentials and "
                "the IAM policy)"
            ) from exc
        raise


def error_code(exc: Exception) -> str | None:
    """The AWS error code of a botocore ClientError, or None for other exceptions."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def http_status(exc: Exception) -> int | None:
    """The HTTP status of a botocore ClientError, or None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None
