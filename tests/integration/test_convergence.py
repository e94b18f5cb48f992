"""The central property (ARCHITECTURE section 4, rule 5), on every dialect.

Any delivery of an owner's history (shuffled, duplicated, cut into batches,
some batches applied twice) leaves the mirror equal to the owner's final
state, with deleted keys as tombstones that stale upserts never resurrect.

300 examples per dialect by default; HYPOTHESIS_PROFILE=thorough runs 3,000
(or REPLICATION_THOROUGH_EXAMPLES).
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import Customer
from replication.events import ChangeEvent, deleted, upserted
from replication.manifest import Manifest
from replication.mirror import apply_changes
from replication.mirror.statements import MirrorStatements
from tests.conftest import DIALECTS, create_mirror
from tests.databases import Database, connect
from tests.mirror_state import expected_row, key_of, read_mirror
from tests.strategies import customers


@dataclasses.dataclass
class Delivery:
    """An owner's history and one way SQS might deliver it."""

    history: list[ChangeEvent]
    batches: list[list[ChangeEvent]]
    repeat: list[bool]
    bulk: list[bool]


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    keys = [uuid.UUID(int=i + 1) for i in range(draw(st.integers(1, 5)))]
    steps = draw(st.lists(st.tuples(st.sampled_from(keys), st.booleans()), min_size=1, max_size=25))
    versions: dict[uuid.UUID, int] = {}
    history: list[ChangeEvent] = []
    for key, is_delete in steps:
        versions[key] = versions.get(key, 0) + draw(st.integers(1, 3))
        if is_delete:
            history.append(deleted(Customer, key, versions[key]))
        else:
            history.append(upserted(draw(customers(key)), versions[key]))
    duplicates = draw(st.lists(st.sampled_from(history), max_size=len(history)))
    shuffled = draw(st.permutations(history + duplicates))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=8)))
    bounds = [0, *cuts, len(shuffled)]
    batches = [shuffled[a:b] for a, b in itertools.pairwise(bounds) if a < b]
    repeat = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    bulk = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    return Delivery(history, batches, repeat, bulk)


@pytest.fixture(scope="module", params=DIALECTS)
def customer_mirror(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    orders_manifest: Manifest,
) -> Iterator[tuple[Database, MirrorStatements]]:
    db = connect(request.param, tmp_path_factory.mktemp(request.param))
    statements = create_mirror(db, orders_manifest.mirror("crm.customer"))
    try:
        yield db, statements
    finally:
        db.close()


def _apply(
    db: Database, statements: MirrorStatements, batch: list[ChangeEvent], bulk: bool
) -> None:
    if bulk:  # force PostgreSQL's COPY + merge path even for small batches
        statements = dataclasses.replace(statements, bulk_threshold=1)
    apply_changes(db.connection, statements, batch, bulk=bulk)
    db.connection.commit()


def _final_state(history: list[ChangeEvent]) -> dict[tuple[Any, ...], ChangeEvent]:
    last: dict[tuple[Any, ...], ChangeEvent] = {}
    for event in history:
        last[event.key] = event
    return last


@given(delivery=deliveries())
def test_any_delivery_converges_to_the_owners_final_state(
    customer_mirror: tuple[Database, MirrorStatements], delivery: Delivery
) -> None:
    db, statements = customer_mirror
    cursor = db.connection.cursor()
    cursor.execute(f"DELETE FROM {statements.table}")
    db.connection.commit()
    cursor.close()

    for batch, again, bulk in zip(delivery.batches, delivery.repeat, delivery.bulk, strict=True):
        _apply(db, statements, batch, bulk)
        if again:
            _apply(db, statements, batch, not bulk)

    final = _final_state(delivery.history)
    expected = {
        key_of(statements, key): expected_row(statements, key, event.version, event.data)
        for key, event in final.items()
    }
    assert read_mirror(db, statements) == expected

    # Late replays of everything older never resurrect a deleted key nor roll back a row.
    older = [e for e in delivery.history if e.version < final[e.key].version]
    if older:
        _apply(db, statements, older, bulk=False)
        assert read_mirror(db, statements) == expected
