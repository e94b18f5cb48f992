"""Which topic the events of an entity version go to."""

from __future__ import annotations

__all__ = ["TopicRoute", "TopicRouter"]

from dataclasses import dataclass

from replication.manifest import Manifest
from replication.topology.naming import DEFAULT_PREFIX, topic_arn, topic_name


@dataclass(frozen=True)
class TopicRoute:
    """Where the events of one entity version go."""

    topic_arn: str
    fifo: bool = False
    supersede: bool = True
    """Publish only the newest waiting version of a key (the manifest's ``supersede``)."""


class TopicRouter:
    """Maps ``(entity, major version)`` to its topic."""

    def __init__(self, routes: dict[tuple[str, int], TopicRoute]) -> None:
        self._routes = dict(routes)

    @classmethod
    def for_manifest(
        cls,
        manifest: Manifest,
        *,
        region: str,
        account: str,
        prefix: str = DEFAULT_PREFIX,
        partition: str = "aws",
    ) -> TopicRouter:
        """The topics of every entity the service owns, named as ARCHITECTURE section 5 says."""
        routes = {}
        for owned in manifest.owns:
            name = topic_name(owned.entity, owned.version, prefix=prefix, fifo=owned.fifo)
            arn = topic_arn(name, region=region, account=account, partition=partition)
            routes[(owned.entity, owned.version)] = TopicRoute(arn, owned.fifo, owned.supersede)
        return cls(routes)

    def route(self, entity: str, version: int) -> TopicRoute | None:
        """The topic of an entity version, or None when this relay does not publish it."""
        return self._routes.get((entity, version))
