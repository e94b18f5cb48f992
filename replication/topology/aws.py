"""Plan and apply the topology with boto3: idempotent, converging, plan shown first.

:meth:`AwsTopology.plan` compares the topology with the live account and lists
what would be created, updated or left alone, with the differing attributes;
:meth:`AwsTopology.apply` carries the plan out. Running ``apply`` twice changes
nothing the second time. ``apply`` deletes nothing; :func:`destroy` deletes,
but keeps a queue or DLQ that still holds messages unless told otherwise.
"""

from __future__ import annotations

__all__ = ["AwsTopology", "Change", "Plan", "Removal", "destroy"]

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from replication.aws_clients import client
from replication.awsenv import error_code, locate
from replication.topology.model import QueueSpec, TopicSpec, Topology
from replication.topology.naming import topic_arn
from replication.topology.policies import (
    apply_role_arn,
    dlq_attributes,
    publisher_role_arn,
    queue_attributes,
    subscription_attributes,
    topic_attributes,
)

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

Action = Literal["create", "update", "unchanged"]
Kind = Literal["topic", "queue", "dlq", "subscription"]
_JSON_ATTRIBUTES = frozenset({"Policy", "RedrivePolicy", "FilterPolicy"})
_CREATE_ONLY = frozenset({"FifoQueue", "FifoTopic"})


@dataclass(frozen=True)
class Change:
    """One resource and what would happen to it."""

    action: Action
    kind: Kind
    name: str
    differences: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "differences": list(self.differences),
        }


@dataclass(frozen=True)
class Plan:
    """Every resource of the topology with its action, in apply order."""

    changes: tuple[Change, ...]

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that are not ``unchanged``."""
        return tuple(c for c in self.changes if c.action != "unchanged")

    def render(self) -> str:
        """Human-readable plan."""
        lines = []
        for change in self.changes:
            mark = {"create": "+", "update": "~", "unchanged": "="}[change.action]
            lines.append(f"{mark} {change.kind:<12} {change.name}  ({change.action})")
            lines += [f"      {d}" for d in change.differences]
        creates = sum(c.action == "create" for c in self.changes)
        updates = sum(c.action == "update" for c in self.changes)
        same = sum(c.action == "unchanged" for c in self.changes)
        if not self.pending:
            lines.append(f"No changes: {same} resource(s) already match the manifests.")
        else:
            lines.append(f"{creates} to create, {updates} to update, {same} unchanged.")
        return "\n".join(lines)


def _same(name: str, wanted: str, live: str | None) -> bool:
    if live is None:
        return False
    if name in _JSON_ATTRIBUTES:
        try:
            return bool(json.loads(wanted) == json.loads(live))
        except ValueError:
            return False
    return wanted == live


def _diff(wanted: dict[str, str], live: dict[str, str]) -> tuple[str, ...]:
    out = []
    for name, value in sorted(wanted.items()):
        if name in _CREATE_ONLY:
            continue
        if not _same(name, value, live.get(name)):
            out.append(f"{name}: {live.get(name, '(unset)')} -> {value}")
    return tuple(out)


class AwsTopology:
    """Reads and converges the live SNS/SQS resources of a topology."""

    def __init__(
        self,
        sns: SNSClient,
        sqs: SQSClient,
        *,
        region: str,
        account: str,
        partition: str = "aws",
    ) -> None:
        self.sns = sns
        self.sqs = sqs
        self.region = region
        self.account = account
        self.partition = partition

    @classmethod
    def from_environment(cls) -> AwsTopology:
        """Clients, region and account from the standard AWS configuration."""
        where = locate()
        return cls(
            client("sns", where.session),
            client("sqs", where.session),
            region=where.region,
            account=where.account,
            partition=where.partition,
        )

    # -- names ------------------------------------------------------------------------

    def topic_arn(self, topic: TopicSpec) -> str:
        """The ARN the topic has (or will have)."""
        account = topic.account or self.account
        return topic_arn(topic.name, region=self.region, account=account, partition=self.partition)

    def queue_arn(self, name: str, account: str | None = None) -> str:
        """The ARN a queue has (or will have)."""
        return f"arn:{self.partition}:sqs:{self.region}:{account or self.account}:{name}"

    # -- reading ----------------------------------------------------------------------

    def _topic_live(self, arn: str) -> dict[str, str] | None:
        try:
            attributes: dict[str, str] = self.sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        except Exception as exc:
            if error_code(exc) in ("NotFound", "NotFoundException"):
                return None
            raise
        return attributes

    def _queue_live(self, name: str) -> dict[str, str] | None:
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except Exception as exc:
            if error_code(exc) in (
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
            ):
                return None
            raise
        live = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        return {str(name): value for name, value in live["Attributes"].items()}

    def _subscription_live(self, topic: str, queue: str) -> tuple[str, dict[str, str]] | None:
        paginator = self.sns.get_paginator("list_subscriptions_by_topic")
        for page in paginator.paginate(TopicArn=topic):
            for sub in page.get("Subscriptions", []):
                if sub["Protocol"] == "sqs" and sub["Endpoint"] == queue:
                    arn = sub["SubscriptionArn"]
                    attributes = self.sns.get_subscription_attributes(SubscriptionArn=arn)
                    return arn, attributes["Attributes"]
        return None

    def _publisher(self, topology: Topology, topic: TopicSpec) -> str:
        return publisher_role_arn(
            topology.prefix, topic.owner, topic.account or self.account, self.partition
        )

    def plan(self, topology: Topology) -> Plan:
        """What apply would do, resource by resource, in the order it would do it."""
        changes: list[Change] = []
        for topic in topology.topics:
            arn = self.topic_arn(topic)
            wanted = topic_attributes(topic, arn, self._publisher(topology, topic))
            changes.append(self._compare("topic", topic.name, wanted, self._topic_live(arn)))
        for queue in topology.queues:
            dlq_arn = self.queue_arn(queue.dlq, queue.account)
            role = apply_role_arn(
                topology.prefix, queue.consumer, queue.account or self.account, self.partition
            )
            wanted_dlq = dlq_attributes(queue, dlq_arn, role, queue.operators)
            changes.append(self._compare("dlq", queue.dlq, wanted_dlq, self._queue_live(queue.dlq)))
            own_arn = self.queue_arn(queue.name, queue.account)
            arn = self.topic_arn(topology.topic(queue.entity, queue.version))
            wanted = queue_attributes(queue, own_arn, arn, dlq_arn, queue.operators)
            changes.append(self._compare("queue", queue.name, wanted, self._queue_live(queue.name)))
            live_sub = None
            if self._topic_live(arn) is not None:
                found = self._subscription_live(arn, own_arn)
                live_sub = None if found is None else found[1]
            changes.append(
                self._compare(
                    "subscription",
                    f"{queue.topic} -> {queue.name}",
                    subscription_attributes(queue),
                    live_sub,
                )
            )
        return Plan(tuple(changes))

    @staticmethod
    def _compare(
        kind: Kind, name: str, wanted: dict[str, str], live: dict[str, str] | None
    ) -> Change:
        if live is None:
            return Change("create", kind, name, attributes=wanted)
        differences = _diff(wanted, live)
        action: Action = "update" if differences else "unchanged"
        return Change(action, kind, name, differences, attributes=wanted)

    # -- converging -------------------------------------------------------------------

    def apply(self, topology: Topology) -> Plan:
        """Converge the account to the topology; returns the plan it carried out."""
        plan = self.plan(topology)
        topics = {t.name: t for t in topology.topics}
        queues = {q.name: q for q in topology.queues}
        for change in plan.pending:
            if change.kind == "topic":
                self._apply_topic(change, topics[change.name])
            elif change.kind in ("queue", "dlq"):
                self._apply_queue(change)
            else:
                queue = queues[change.name.split(" -> ", 1)[1]]
                self._apply_subscription(change, topology, queue)
        return plan

    def _apply_topic(self, change: Change, topic: TopicSpec) -> None:
        if change.action == "create":
            self.sns.create_topic(Name=topic.name, Attributes=change.attributes)
            return
        arn = self.topic_arn(topic)
        for name, value in change.attributes.items():
            if name not in _CREATE_ONLY:
                self.sns.set_topic_attributes(
                    TopicArn=arn, AttributeName=name, AttributeValue=value
                )

    def _apply_queue(self, change: Change) -> None:
        # The names come from replication.topology.policies: SQS's own attribute names.
        attributes = cast("dict[QueueAttributeNameType, str]", change.attributes)
        if change.action == "create":
            self.sqs.create_queue(QueueName=change.name, Attributes=attributes)
            return
        url = self.sqs.get_queue_url(QueueName=change.name)["QueueUrl"]
        updatable = {k: v for k, v in attributes.items() if k not in _CREATE_ONLY}
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes=updatable)

    def _apply_subscription(self, change: Change, topology: Topology, queue: QueueSpec) -> None:
        arn = self.topic_arn(topology.topic(queue.entity, queue.version))
        endpoint = self.queue_arn(queue.name, queue.account)
        if change.action == "create":
            self.sns.subscribe(
                TopicArn=arn,
                Protocol="sqs",
                Endpoint=endpoint,
                Attributes=change.attributes,
                ReturnSubscriptionArn=True,
            )
            return
        found = self._subscription_live(arn, endpoint)
        if found is None:
            return
        for name, value in change.attributes.items():
            self.sns.set_subscription_attributes(
                SubscriptionArn=found[0], AttributeName=name, AttributeValue=value
            )


@dataclass(frozen=True)
class Removal:
    """One resource ``destroy`` deleted, or kept and why."""

    kind: Kind
    name: str
    deleted: bool
    reason: str = ""


def _message_count(attributes: dict[str, str]) -> int:
    names = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    return sum(int(attributes.get(n, "0")) for n in names)


def destroy(
    live: AwsTopology, topology: Topology, *, delete_messages: bool = False
) -> list[Removal]:
    """Delete the topology's resources; a queue or DLQ holding messages is kept unless told."""
    removals: list[Removal] = []
    for queue in topology.queues:
        topic = topology.topic(queue.entity, queue.version)
        arn = live.topic_arn(topic)
        if live._topic_live(arn) is not None:
            found = live._subscription_live(arn, live.queue_arn(queue.name, queue.account))
            if found is not None:
                live.sns.unsubscribe(SubscriptionArn=found[0])
                removals.append(Removal("subscription", f"{queue.topic} -> {queue.name}", True))
        pairs: tuple[tuple[Kind, str], ...] = (("queue", queue.name), ("dlq", queue.dlq))
        for kind, name in pairs:
            attributes = live._queue_live(name)
            if attributes is None:
                continue
            count = _message_count(attributes)
            if count and not delete_messages:
                reason = f"holds {count} message(s); export or replay them first"
                removals.append(Removal(kind, name, False, reason))
                continue
            url = live.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            live.sqs.delete_queue(QueueUrl=url)
            removals.append(Removal(kind, name, True))
    for topic in topology.topics:
        arn = live.topic_arn(topic)
        if live._topic_live(arn) is not None:
            live.sns.delete_topic(TopicArn=arn)
            removals.append(Removal("topic", topic.name, True))
    return removals
