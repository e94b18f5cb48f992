"""Resource names (ARCHITECTURE section 5), as pure functions.

| resource | name |
| --- | --- |
| topic | ``<prefix>-<owner>-<entity>-v<major>`` (``.fifo`` when FIFO) |
| queue | ``<prefix>-<consumer>--<owner>-<entity>-v<major>`` |
| DLQ | queue name + ``-dlq`` |

Underscores in entity names become hyphens only where AWS would refuse them:
SNS and SQS accept letters, digits, hyphens and underscores, so names are kept
as declared.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PREFIX",
    "PREFIX_RE",
    "TEMPLATE_PREFIX",
    "check_prefix",
    "dlq_name",
    "queue_name",
    "topic_arn",
    "topic_name",
]

import re

from replication.errors import ConfigurationError

DEFAULT_PREFIX = "dev"
PREFIX_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")
"""An environment prefix: as the rendered template's ``Prefix`` parameter allows."""
TEMPLATE_PREFIX = "${Prefix}"
"""The prefix in a rendered template: its ``Prefix`` parameter, checked by CloudFormation."""


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid environment prefix, else ConfigurationError."""
    if prefix != TEMPLATE_PREFIX and (
        not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix)
    ):
        raise ConfigurationError(
            f"resource name prefix {prefix!r} is not valid: 1 to 20 lowercase letters, digits "
            "and hyphens, starting with a letter (--prefix, REPLICATION_PREFIX)"
        )
    return prefix


def _entity_part(entity: str, version: int) -> str:
    owner, name = entity.split(".", 1)
    return f"{owner}-{name}-v{version}"


def topic_name(
    entity: str, version: int, *, prefix: str = DEFAULT_PREFIX, fifo: bool = False
) -> str:
    """The SNS topic of an owned entity at a major version."""
    base = f"{check_prefix(prefix)}-{_entity_part(entity, version)}"
    return f"{base}.fifo" if fifo else base


def queue_name(
    consumer: str, entity: str, version: int, *, prefix: str = DEFAULT_PREFIX, fifo: bool = False
) -> str:
    """The SQS queue feeding ``consumer``'s mirror of an entity."""
    base = f"{check_prefix(prefix)}-{consumer}--{_entity_part(entity, version)}"
    return f"{base}.fifo" if fifo else base


def dlq_name(queue: str) -> str:
    """The dead-letter queue of a queue."""
    if queue.endswith(".fifo"):
        return f"{queue.removesuffix('.fifo')}-dlq.fifo"
    return f"{queue}-dlq"


def topic_arn(name: str, *, region: str, account: str, partition: str = "aws") -> str:
    """The ARN of a topic from its name and where it lives."""
    return f"arn:{partition}:sns:{region}:{account}:{name}"
