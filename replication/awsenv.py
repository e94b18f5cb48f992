"""Where the standard AWS configuration points, and what a botocore error says.

boto3 is imported only when a session is asked for, so importing this module
costs nothing on a Lambda's cold path.
"""

from __future__ import annotations

__all__ = ["AwsLocation", "error_code", "http_status", "locate"]

from dataclasses import dataclass
from typing import Any

from replication.errors import ConfigurationError


@dataclass(frozen=True)
class AwsLocation:
    """A boto3 session with the region, account and partition it works in."""

    session: Any
    region: str
    account: str
    partition: str


def locate() -> AwsLocation:
    """The session, region, account and partition of the standard AWS configuration."""
    import boto3

    session = boto3.session.Session()
    region = session.region_name
    if not region:
        raise ConfigurationError(
            "no AWS region configured: set AWS_REGION or AWS_DEFAULT_REGION, or use a profile"
        )
    account = session.client("sts").get_caller_identity()["Account"]
    return AwsLocation(session, region, account, session.get_partition_for_region(region))


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
