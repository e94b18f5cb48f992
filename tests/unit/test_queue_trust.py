"""Who may put a message in a consumer's queue and DLQ, by the policies topology apply sets.

The emulator stores resource policies but does not evaluate them, so these tests
evaluate the exact policy documents (the ones ``test_topology_aws`` shows are
live after ``topology apply`` and identical to the rendered template's) with
AWS's documented rules for the condition operators they use: an explicit deny
wins; conditions under one operator and across operators must all hold; a
negated operator holds when its key is absent from the request. Each sender is
given an identity policy that allows ``sqs:SendMessage`` on everything, so only
the queue's own policy stands between it and the mirror.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from replication.topology.policies import apply_role_arn, dlq_policy, queue_policy

ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dev-orders--crm-customer-v1"
DLQ = f"{QUEUE}-dlq"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:dev-crm-customer-v1"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/oncall/replication-operator"
BACKFILL = "arn:aws:iam::333333333333:role/replication-backfill"
APPLY = apply_role_arn("dev", "orders", ACCOUNT)
MALLORY = f"arn:aws:iam::{ACCOUNT}:role/mallory"


@dataclass(frozen=True)
class Request:
    """An ``sqs:SendMessage`` as IAM sees it: who, and the request context keys set."""

    principal: str | None
    """The calling role's ARN (``aws:PrincipalArn``); None for a service principal."""
    service: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    def keys(self) -> dict[str, str]:
        keys = dict(self.context)
        if self.principal is not None:
            keys["aws:PrincipalArn"] = self.principal
        return keys


def _condition_holds(condition: dict[str, dict[str, Any]], keys: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            present = key in keys
            matched = present and keys[key] in values
            if operator in ("ArnEquals", "StringEquals"):
                if not matched:
                    return False
            elif operator in ("ArnNotEquals", "StringNotEquals"):
                if matched:  # absent key: the negated operator holds
                    return False
            else:
                raise AssertionError(f"operator {operator} not covered by this evaluator")
    return True


def _principal_matches(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if "Service" in principal:
        return bool(request.service == principal["Service"])
    accounts = principal["AWS"] if isinstance(principal["AWS"], list) else [principal["AWS"]]
    caller_account = (request.principal or "").split(":")[4:5]
    return any(a.split(":")[4:5] == caller_account for a in accounts)


def allowed(policy: dict[str, Any], resource: str, request: Request) -> bool:
    """Whether SendMessage on ``resource`` is allowed, the caller's identity policy allowing it."""
    decision = request.principal is not None  # identity policy: sqs:SendMessage on *
    for statement in policy["Statement"]:
        assert statement["Action"] == "sqs:SendMessage"
        if statement["Resource"] != resource:
            continue
        if not _principal_matches(statement["Principal"], request):
            continue
        if not _condition_holds(statement.get("Condition", {}), request.keys()):
            continue
        if statement["Effect"] == "Deny":
            return False
        decision = True
    return decision


QUEUE_POLICY = queue_policy(QUEUE, TOPIC, [OPERATOR, BACKFILL])
DLQ_POLICY = dlq_policy(DLQ, APPLY, [OPERATOR, BACKFILL])


def sns_delivery(topic: str) -> Request:
    return Request(None, service="sns.amazonaws.com", context={"aws:SourceArn": topic})


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        # The attacks: a direct send (Mallory's v5, or a refresh at equal version), the
        # owner's topic name in another account and region, another topic of the account.
        (Request(MALLORY), False),
        (Request(f"arn:aws:iam::{ACCOUNT}:role/{'admin'}"), False),
        (Request("arn:aws:iam::666666666666:role/mallory"), False),
        (sns_delivery("arn:aws:sns:ap-south-1:666666666666:dev-crm-customer-v1"), False),
        (sns_delivery(f"arn:aws:sns:us-east-1:{ACCOUNT}:dev-attacker-customer-v1"), False),
        # A role that names the topic as its source is still not the topic.
        (Request(MALLORY, context={"aws:SourceArn": "arn:aws:sns:eu-west-1:1:x"}), False),
        # The legitimate senders.
        (sns_delivery(TOPIC), True),
        (Request(OPERATOR), True),
        (Request(BACKFILL), True),
    ],
    ids=[
        "direct-send",
        "an-administrator-of-the-account",
        "another-account",
        "owners-topic-name-elsewhere",
        "another-topic",
        "a-role-with-a-source-arn",
        "the-owners-topic",
        "an-operator",
        "an-operator-in-another-account",
    ],
)
def test_only_the_topic_and_the_operators_can_send_to_a_queue(
    request_: Request, expected: bool
) -> None:
    assert allowed(QUEUE_POLICY, QUEUE, request_) is expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (Request(MALLORY), False),
        (sns_delivery(TOPIC), False),
        (Request(APPLY), True),
        (Request(OPERATOR), True),
        (Request(BACKFILL), True),
    ],
    ids=["direct-send", "the-topic", "the-apply-function", "an-operator", "a-backfill"],
)
def test_only_the_apply_function_and_the_operators_can_send_to_a_dlq(
    request_: Request, expected: bool
) -> None:
    assert allowed(DLQ_POLICY, DLQ, request_) is expected


def test_without_operators_only_the_topic_sends() -> None:
    policy = queue_policy(QUEUE, TOPIC)

    assert allowed(policy, QUEUE, sns_delivery(TOPIC))
    assert not allowed(policy, QUEUE, Request(OPERATOR))
    assert not allowed(dlq_policy(DLQ, APPLY), DLQ, Request(OPERATOR))
