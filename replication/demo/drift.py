"""The demo's drift step: a mirror edited by hand, found by reconcile, fixed by --repair."""

from __future__ import annotations

__all__ = ["drift_and_repair"]

from typing import Any

import sqlalchemy as sa

from replication.sync.reconcile import DRIFT_KINDS, Reconciliation


def drift_and_repair(say: Any, owner: sa.Engine, orders: sa.Engine, runner: Any, sqs: Any) -> bool:
    """Damage orders' customer mirror, reconcile, repair, reconcile; True when equal again."""
    from examples.crm import service as crm
    from replication.dlq.queues import Queues
    from replication.manifest import load_manifest
    from replication.sync.repair import repair
    from replication.sync.send import ConsumerQueue
    from replication.sync.verify import compare_mirror

    declaration = load_manifest(_orders_manifest()).mirror("crm.customer")
    with orders.begin() as conn:
        ids = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM customer_mirror WHERE NOT _deleted ORDER BY id LIMIT 4"
            )
        ]
        conn.execute(sa.text("DELETE FROM customer_mirror WHERE id = :k"), {"k": ids[0]})
        conn.execute(
            sa.text("UPDATE customer_mirror SET tier = 'platinum', name = 'Mallory' WHERE id = :k"),
            {"k": ids[1]},
        )
        conn.execute(
            sa.text("UPDATE customer_mirror SET _version = _version - 1 WHERE id = :k"),
            {"k": ids[2]},
        )
    say.line("someone edits orders' mirror by hand: deletes a row, renames one, rolls one back")

    found = compare_mirror(crm.customer_source, declaration, owner, orders, buckets=64)
    _report(say, "replication reconcile", found)
    queue = next(q for q in runner.queues if "crm-customer" in q.name)
    target = ConsumerQueue(Queues(sqs), queue.name)
    sent = repair(found, crm.customer_source, declaration, owner, target)
    say.line(
        f"--repair: {sent.snapshots} snapshot(s) and {sent.tombstones} tombstone(s) sent to "
        f"{queue.name} only (other consumers see nothing)"
    )
    runner.drain()
    again = compare_mirror(crm.customer_source, declaration, owner, orders, buckets=64)
    _report(say, "reconcile again", again)
    return found.total == 3 and again.total == 0


def _report(say: Any, title: str, result: Reconciliation) -> None:
    counts = ", ".join(f"{result.counts[k]} {k}" for k in DRIFT_KINDS if result.counts[k])
    say.line(
        f"{title}: {result.owner_rows} owner rows, {result.mirror_rows} mirror rows, "
        f"{result.differing_buckets} of {result.buckets} buckets differ"
        + (f": {counts}" if counts else ": equal")
    )
    for drift in result.drifts:
        fields = f", fields {', '.join(drift.fields)}" if drift.fields else ""
        say.line(
            f"  {drift.kind:<8} {drift.subject} (owner v{drift.owner_version or '-'}, "
            f"mirror v{drift.mirror_version or '-'}{fields})"
        )


def _orders_manifest() -> Any:
    from replication.demo.lines_folder import examples_folder

    return examples_folder() / "orders" / "replication.yaml"
