"""The topology computed from all manifests, and the problems only all of them reveal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from replication.errors import ConfigurationError
from replication.manifest import load_manifests
from replication.topology.model import (
    MAX_QUEUE_NAME,
    TopologyError,
    build_topology,
    resolved_queue_names,
    shorten,
)
from tests.paths import ROOT


def write(folder: Path, service: str, body: str) -> None:
    (folder / service).mkdir(parents=True, exist_ok=True)
    (folder / service / "replication.yaml").write_text(
        f"service: {service}\ndatabase:\n  url_env: {service.upper()}_DATABASE_URL\n{body}"
    )


OWN_CUSTOMER = "owns:\n  - entity: crm.customer\n    version: 1\n"
MIRROR_CUSTOMER = (
    "mirrors:\n  - entity: crm.customer\n    version: 1\n    table: customer_mirror\n"
    "    fields: [id, name]\n"
)


def test_the_example_services_give_one_topic_per_owned_entity_and_one_queue_per_mirror() -> None:
    topology = build_topology(load_manifests([ROOT / "examples"]), prefix="prod")

    assert [(t.name, t.owner) for t in topology.topics] == [
        ("prod-catalog-product-v1", "catalog"),
        ("prod-crm-customer-v1", "crm"),
    ]
    assert [(q.name, q.dlq, q.topic, q.max_receive_count) for q in topology.queues] == [
        (
            "prod-orders--catalog-product-v1",
            "prod-orders--catalog-product-v1-dlq",
            "prod-catalog-product-v1",
            5,
        ),
        (
            "prod-orders--crm-customer-v1",
            "prod-orders--crm-customer-v1-dlq",
            "prod-crm-customer-v1",
            5,
        ),
    ]
    assert topology.subscribers("prod-crm-customer-v1") == topology.queues_of("orders")[1:]


def test_an_entity_owned_by_two_services_is_refused(tmp_path: Path) -> None:
    # Each manifest only owns entities named after its service, so two owners of one
    # entity can only come from manifests assembled elsewhere: the topology checks anyway.
    [crm] = load_manifests([ROOT / "examples" / "crm"])
    twin = dataclasses.replace(crm, path=tmp_path / "replication.yaml")

    with pytest.raises(TopologyError) as error:
        build_topology([crm, twin])

    [problem] = error.value.problems
    assert problem.startswith("crm.customer v1 is owned by two services: crm (")


def test_a_mirror_of_an_entity_nobody_publishes_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "orders", MIRROR_CUSTOMER)

    with pytest.raises(TopologyError) as error:
        build_topology(load_manifests([tmp_path]))

    [problem] = error.value.problems
    assert "orders (" in problem
    assert (
        "mirrors crm.customer v1, which nobody publishes (no service declares it under owns)"
        in (problem)
    )


def test_fifo_mismatch_between_topic_and_queue_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "crm", "owns:\n  - entity: crm.customer\n    version: 1\n    fifo: true\n")
    write(tmp_path, "orders", MIRROR_CUSTOMER)

    with pytest.raises(TopologyError) as error:
        build_topology(load_manifests([tmp_path]))

    [problem] = error.value.problems
    assert "mirrors crm.customer v1 with fifo: false, but its topic dev-crm-customer-v1.fifo" in (
        problem
    )
    assert "is FIFO" in problem


def test_fifo_topics_and_queues_carry_the_suffix_on_the_queue_and_its_dlq(tmp_path: Path) -> None:
    write(tmp_path, "crm", "owns:\n  - entity: crm.customer\n    version: 1\n    fifo: true\n")
    write(tmp_path, "orders", MIRROR_CUSTOMER.replace("fields:", "fifo: true\n    fields:"))

    [queue] = build_topology(load_manifests([tmp_path])).queues

    assert queue.name == "dev-orders--crm-customer-v1.fifo"
    assert queue.dlq == "dev-orders--crm-customer-v1-dlq.fifo"
    assert queue.topic == "dev-crm-customer-v1.fifo"


def test_declared_max_receive_count_and_filter_policy_reach_the_queue(tmp_path: Path) -> None:
    write(tmp_path, "crm", OWN_CUSTOMER)
    write(
        tmp_path,
        "orders",
        MIRROR_CUSTOMER + "    max_receive_count: 8\n    filter_policy:\n      op: [upserted]\n",
    )

    [queue] = build_topology(load_manifests([tmp_path])).queues

    assert queue.max_receive_count == 8
    assert queue.filter_policy == {"op": ["upserted"]}


def test_a_max_receive_count_below_five_is_refused_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "crm", OWN_CUSTOMER)
    write(tmp_path, "orders", MIRROR_CUSTOMER + "    max_receive_count: 2\n")

    with pytest.raises(Exception, match=r"replication.yaml:\d+ at mirrors\[0\].max_receive_count"):
        load_manifests([tmp_path])


def test_long_names_are_shortened_deterministically_within_aws_limits() -> None:
    consumer = "a_consumer_with_a_long_name_xyz"
    entity = "an_owner_with_a_long_name_abcde.an_entity_with_a_long_name_abcd"
    prefix = "production-eu-west-1"

    name, dlq = resolved_queue_names(consumer, entity, 1, prefix, False)
    again = resolved_queue_names(consumer, entity, 1, prefix, False)

    full = f"{prefix}-{consumer}--{entity.replace('.', '-')}-v1"
    assert len(full) > MAX_QUEUE_NAME - len("-dlq")
    assert (name, dlq) == again
    assert len(dlq) <= MAX_QUEUE_NAME
    assert dlq == name + "-dlq"
    assert name.startswith(full[:40])
    assert shorten(full, 76) == name
    assert shorten(full + "x", 76) != name


def test_a_prefix_aws_or_the_template_would_refuse_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "crm", OWN_CUSTOMER)
    write(tmp_path, "orders", MIRROR_CUSTOMER)
    manifests = load_manifests([tmp_path])

    for prefix in ("dev\n", "Dev", "dev_1", "1dev", "", "a" * 21, "dev prod"):
        with pytest.raises(ConfigurationError, match=r"prefix .* is not valid"):
            build_topology(manifests, prefix=prefix)
    assert build_topology(manifests, prefix="a" * 20).queues


def test_shorten_keeps_short_names_and_the_suffix() -> None:
    assert shorten("short", 80) == "short"
    cut = shorten("n" * 100, 80, suffix=".fifo")
    assert len(cut) == 80
    assert cut.endswith(".fifo")
