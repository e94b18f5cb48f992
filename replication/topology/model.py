"""The topology derived from every manifest: topics, queues, DLQs, subscriptions.

Pure: :func:`build_topology` turns validated manifests into plain data, and
checks what no single manifest can: an entity owned twice, a mirror of an
entity nobody publishes, FIFO mismatches, names over AWS limits (shortened
deterministically instead).
"""

from __future__ import annotations

__all__ = [
    "MAX_QUEUE_NAME",
    "MAX_TOPIC_NAME",
    "QueueSpec",
    "TopicSpec",
    "Topology",
    "TopologyError",
    "build_topology",
    "resolved_queue_names",
    "resolved_topic_name",
    "shorten",
]

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from replication.errors import ConfigurationError
from replication.manifest import Manifest
from replication.topology.naming import DEFAULT_PREFIX, dlq_name, queue_name, topic_name

MAX_QUEUE_NAME = 80
MAX_TOPIC_NAME = 256
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


class TopologyError(ConfigurationError):
    """The manifests do not add up to a topology; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class TopicSpec:
    """One SNS topic: an owned entity at one major version."""

    name: str
    entity: str
    version: int
    owner: str
    fifo: bool
    account: str | None = None


@dataclass(frozen=True)
class QueueSpec:
    """One consumer's SQS queue for a mirrored entity, its DLQ and its subscription."""

    name: str
    dlq: str
    consumer: str
    entity: str
    version: int
    topic: str
    fifo: bool
    max_receive_count: int
    filter_policy: dict[str, Any] | None = field(default=None, hash=False, compare=True)
    account: str | None = None
    operators: tuple[str, ...] = ()
    """Roles that may send to the queue and its DLQ besides the topic and the consumer."""


@dataclass(frozen=True)
class Topology:
    """Everything the manifests ask for, in a stable order."""

    prefix: str
    topics: tuple[TopicSpec, ...]
    queues: tuple[QueueSpec, ...]

    def topic(self, entity: str, version: int) -> TopicSpec:
        """The topic of an entity version; KeyError when nobody publishes it."""
        for topic in self.topics:
            if (topic.entity, topic.version) == (entity, version):
                return topic
        raise KeyError(f"no topic for {entity} v{version}")

    def queues_of(self, consumer: str) -> tuple[QueueSpec, ...]:
        """The queues feeding one consumer."""
        return tuple(q for q in self.queues if q.consumer == consumer)

    def subscribers(self, topic: str) -> tuple[QueueSpec, ...]:
        """The queues subscribed to a topic."""
        return tuple(q for q in self.queues if q.topic == topic)


def shorten(name: str, limit: int, *, suffix: str = "") -> str:
    """``name`` + ``suffix`` within ``limit`` characters, cut with a stable hash if needed.

    The result is the name's head, ``-``, then the first 8 hex digits of the
    SHA-256 of the full name, then the suffix: deterministic, and distinct
    names stay distinct.
    """
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = name[: limit - len(suffix) - len(digest) - 1].rstrip("-_")
    return f"{head}-{digest}{suffix}"


def resolved_topic_name(entity: str, version: int, prefix: str, fifo: bool) -> str:
    """The topic name of an entity version as deployed: shortened when over the limit."""
    base = topic_name(entity, version, prefix=prefix)
    return shorten(base, MAX_TOPIC_NAME, suffix=".fifo" if fifo else "")


def resolved_queue_names(
    consumer: str, entity: str, version: int, prefix: str, fifo: bool
) -> tuple[str, str]:
    """The names of a consumer's queue and its DLQ as deployed: shortened when over the limit."""
    base = queue_name(consumer, entity, version, prefix=prefix)
    suffix = ".fifo" if fifo else ""
    # The DLQ adds "-dlq": shorten so that the DLQ name fits too.
    queue = shorten(base, MAX_QUEUE_NAME - len("-dlq"), suffix=suffix)
    return queue, dlq_name(queue)


def build_topology(manifests: Iterable[Manifest], *, prefix: str = DEFAULT_PREFIX) -> Topology:
    """The topology of all services; raises TopologyError listing every problem."""
    manifests = list(manifests)
    problems: list[str] = []
    owners: dict[tuple[str, int], tuple[Manifest, bool]] = {}
    for manifest in manifests:
        for owned in manifest.owns:
            slot = (owned.entity, owned.version)
            if slot in owners:
                other = owners[slot][0]
                problems.append(
                    f"{owned.entity} v{owned.version} is owned by two services: "
                    f"{other.service} ({other.path}) and {manifest.service} ({manifest.path})"
                )
                continue
            owners[slot] = (manifest, owned.fifo)
    topics = {
        slot: TopicSpec(
            name=resolved_topic_name(slot[0], slot[1], prefix, fifo),
            entity=slot[0],
            version=slot[1],
            owner=owner.service,
            fifo=fifo,
            account=owner.account,
        )
        for slot, (owner, fifo) in owners.items()
    }
    queues: list[QueueSpec] = []
    for manifest in manifests:
        for mirror in manifest.mirrors:
            info = mirror.contract
            slot = (info.entity, info.version)
            topic = topics.get(slot)
            where = f"{manifest.service} ({manifest.path})"
            if topic is None:
                published = sorted(v for e, v in topics if e == info.entity)
                hint = (
                    f"published versions: {', '.join(f'v{v}' for v in published)}"
                    if published
                    else "no service declares it under owns"
                )
                problems.append(f"{where} mirrors {info.label}, which nobody publishes ({hint})")
                continue
            if topic.fifo != mirror.fifo:
                kind = "FIFO" if topic.fifo else "standard"
                problems.append(
                    f"{where} mirrors {info.label} with fifo: {str(mirror.fifo).lower()}, "
                    f"but its topic {topic.name} is {kind}; a FIFO topic delivers only to FIFO "
                    "queues and a standard topic only to standard ones"
                )
                continue
            name, dlq = resolved_queue_names(
                manifest.service, info.entity, info.version, prefix, topic.fifo
            )
            queues.append(
                QueueSpec(
                    name=name,
                    dlq=dlq,
                    consumer=manifest.service,
                    entity=info.entity,
                    version=info.version,
                    topic=topic.name,
                    fifo=topic.fifo,
                    max_receive_count=mirror.max_receive_count,
                    filter_policy=mirror.filter_policy,
                    account=manifest.account,
                    operators=manifest.operator_roles,
                )
            )
    names = [q.name for q in queues] + [t.name for t in topics.values()]
    clashes = sorted({n for n in names if names.count(n) > 1})
    problems += [f"resource name {n} is derived twice" for n in clashes]
    if problems:
        raise TopologyError(problems)
    return Topology(
        prefix=prefix,
        topics=tuple(sorted(topics.values(), key=lambda t: t.name)),
        queues=tuple(sorted(queues, key=lambda q: q.name)),
    )
