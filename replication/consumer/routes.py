"""Where a consumer's records arrive from: one route per mirrored entity, by queue name.

Pure: names only, as the topology derives them (no AWS call).
"""

from __future__ import annotations

__all__ = ["Route", "routes_for"]

from dataclasses import dataclass

from replication.manifest import Manifest, MirrorDeclaration
from replication.topology.model import resolved_queue_names, resolved_topic_name
from replication.topology.naming import DEFAULT_PREFIX


@dataclass(frozen=True)
class Route:
    """Where a mirror's records arrive from, and where its poison goes."""

    declaration: MirrorDeclaration
    queue: str
    dlq: str
    topic: str

    @property
    def entity(self) -> str:
        """The mirrored entity."""
        return self.declaration.contract.entity


def routes_for(manifest: Manifest, prefix: str = DEFAULT_PREFIX) -> dict[str, Route]:
    """The consumer's routes, by queue name (as the topology names queues and topics)."""
    routes = {}
    for declaration in manifest.mirrors:
        info = declaration.contract
        queue, dlq = resolved_queue_names(
            manifest.service, info.entity, info.version, prefix, declaration.fifo
        )
        topic = resolved_topic_name(info.entity, info.version, prefix, declaration.fifo)
        routes[queue] = Route(declaration, queue, dlq, topic)
    return routes
