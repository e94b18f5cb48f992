"""The apply's hot path runs without SQLAlchemy, from statements rendered ahead of time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from replication.manifest import Manifest
from replication.mirror.render import statements_for
from replication.mirror.tables import mirror_table
from tests.paths import ROOT

HOT_PATH = textwrap.dedent(
    """
    import sqlite3, sys
    from pathlib import Path

    from contracts import Product
    from replication.events import decode_event, encode_event, upserted
    from replication.mirror import apply_changes
    from replication.mirror.statements import MirrorStatements

    statements = MirrorStatements.from_json(Path(sys.argv[1]).read_text())
    body = encode_event(upserted(
        Product(sku="LAMP-1", title="Desk lamp", price="39.90", active=True, stock=12), 4))
    connection = sqlite3.connect(sys.argv[2])
    result = apply_changes(connection, statements, [decode_event(body)])
    connection.commit()
    heavy = sorted(m for m in ("sqlalchemy", "boto3", "psycopg2", "pymysql") if m in sys.modules)
    rows = connection.execute("SELECT title, _version FROM product_mirror").fetchall()
    print(result.applied, rows, heavy)
    """
)


def test_apply_from_rendered_statements_never_imports_sqlalchemy(
    tmp_path: Path, orders_manifest: Manifest
) -> None:
    declaration = orders_manifest.mirror("catalog.product")
    database = tmp_path / "orders.sqlite"
    mirror_table(declaration).create(sa.create_engine(f"sqlite:///{database}"))
    rendered = tmp_path / "product_mirror.sqlite.json"
    rendered.write_text(statements_for(declaration, "sqlite").to_json())

    done = subprocess.run(
        [sys.executable, "-c", HOT_PATH, str(rendered), str(database)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 [('Desk lamp', 4)] []"
