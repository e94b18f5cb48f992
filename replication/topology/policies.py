"""Resource policies and attributes of the topology, as plain JSON-able data.

Security defaults (ARCHITECTURE section 5): topics and queues encrypted at
rest; a queue admits messages only from its topic (``aws:SourceArn``) and the
operator roles its consumer's manifest names, and denies everyone else, even
principals of its own account whose identity policies would allow it; a DLQ
admits messages only from its consumer's apply function and those operators;
a topic admits publishing only from its owner's relay role.

The statements are built here once, for ``topology apply`` (plain ARNs) and
for the rendered template (CloudFormation references in place of ARNs), so
what is deployed either way denies the same senders.
"""

from __future__ import annotations

__all__ = [
    "SNS_MANAGED_KEY",
    "apply_role_arn",
    "dlq_attributes",
    "dlq_policy",
    "publisher_role_arn",
    "queue_attributes",
    "queue_policy",
    "subscription_attributes",
    "topic_attributes",
    "topic_policy",
]

import json
from collections.abc import Sequence
from typing import Any

from replication.topology.model import DLQ_RETENTION_SECONDS, QueueSpec, TopicSpec

SNS_MANAGED_KEY = "alias/aws/sns"
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
VISIBILITY_TIMEOUT_SECONDS = 180  # 6x a 30 s apply function, as AWS recommends


def publisher_role_arn(prefix: str, service: str, account: str, partition: str = "aws") -> str:
    """The role the owner's relay publishes with."""
    return f"arn:{partition}:iam::{account}:role/{prefix}-{service}-relay"


def topic_policy(topic_arn: str, publisher_role: str) -> dict[str, Any]:
    """Only the owner's relay role may publish; only the topic's account may subscribe."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerPublishes",
                "Effect": "Allow",
                "Principal": {"AWS": publisher_role},
                "Action": "sns:Publish",
                "Resource": topic_arn,
            }
        ],
    }


def apply_role_arn(prefix: str, service: str, account: str, partition: str = "aws") -> str:
    """The role the consumer's apply function runs with (it sends poison to the DLQs)."""
    return f"arn:{partition}:iam::{account}:role/{prefix}-{service}-apply"


def _operator_accounts(operators: Sequence[str]) -> list[str]:
    """The account root of each operator role's account, once each, in order."""
    roots = []
    for role in operators:
        partition, account = role.split(":")[1], role.split(":")[4]
        root = f"arn:{partition}:iam::{account}:root"
        if root not in roots:
            roots.append(root)
    return roots


def _operators_send(resource: Any, operators: Sequence[str]) -> list[dict[str, Any]]:
    """Allow the operator roles to send (needed when they live in another account)."""
    if not operators:
        return []
    return [
        {
            "Sid": "OperatorsSend",
            "Effect": "Allow",
            "Principal": {"AWS": _operator_accounts(operators)},
            "Action": "sqs:SendMessage",
            "Resource": resource,
            "Condition": {"ArnEquals": {"aws:PrincipalArn": list(operators)}},
        }
    ]


def queue_policy(queue: Any, topic: Any, operators: Sequence[str] = ()) -> dict[str, Any]:
    """A queue's policy: its topic delivers, the operator roles send, nobody else does.

    ``queue`` and ``topic`` are ARNs, or the template's references to them. A
    negated condition holds when its key is absent, so the deny catches a direct
    SendMessage (no ``aws:SourceArn``) from any principal that is not an operator,
    and a delivery from any other topic or service.
    """
    unless: dict[str, Any] = {"aws:SourceArn": topic}
    if operators:
        unless["aws:PrincipalArn"] = list(operators)
    statements = [
        {
            "Sid": "TopicDelivers",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
        },
        *_operators_send(queue, operators),
        {
            "Sid": "NobodyElseSends",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:SendMessage",
            "Resource": queue,
            "Condition": {"ArnNotEquals": unless},
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def dlq_policy(dlq: Any, apply_role: Any, operators: Sequence[str] = ()) -> dict[str, Any]:
    """A DLQ's policy: only the consumer's apply function and the operator roles send.

    ``dlq`` and ``apply_role`` are ARNs, or the template's references to them.
    SQS's own move of a message after ``maxReceiveCount`` receives is not a
    SendMessage call and is not affected.
    """
    statements = [
        *_operators_send(dlq, operators),
        {
            "Sid": "OnlyTheConsumerSends",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:SendMessage",
            "Resource": dlq,
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [apply_role, *operators]}},
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def topic_attributes(topic: TopicSpec, topic_arn: str, publisher_role: str) -> dict[str, str]:
    """The topic's attributes as SNS takes them."""
    attributes = {
        "KmsMasterKeyId": SNS_MANAGED_KEY,
        "Policy": json.dumps(topic_policy(topic_arn, publisher_role), sort_keys=True),
    }
    if topic.fifo:
        attributes["FifoTopic"] = "true"
    return attributes


def queue_attributes(
    queue: QueueSpec,
    queue_arn: str,
    topic_arn: str,
    dlq_arn: str,
    operators: Sequence[str] = (),
) -> dict[str, str]:
    """The queue's attributes as SQS takes them."""
    attributes = {
        "SqsManagedSseEnabled": "true",
        "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count},
            sort_keys=True,
        ),
        "Policy": json.dumps(queue_policy(queue_arn, topic_arn, operators), sort_keys=True),
    }
    if queue.fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def dlq_attributes(
    queue: QueueSpec, dlq_arn: str, apply_role: str, operators: Sequence[str] = ()
) -> dict[str, str]:
    """The dead-letter queue's attributes: encrypted, 14 days' retention, its senders."""
    attributes = {
        "SqsManagedSseEnabled": "true",
        "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
        "Policy": json.dumps(dlq_policy(dlq_arn, apply_role, operators), sort_keys=True),
    }
    if queue.fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def subscription_attributes(queue: QueueSpec) -> dict[str, str]:
    """Raw delivery, and the filter policy when one is declared."""
    attributes = {"RawMessageDelivery": "true"}
    if queue.filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(queue.filter_policy, sort_keys=True)
    return attributes
