"""Alembic environment of this service's replication tables (mirrors, outbox).

Run through ``replication migrations generate | upgrade | downgrade | check
--service NAME``; plain Alembic works too: ``alembic -x manifest=replication.yaml
upgrade head``. Revisions live in ``versions/<service>/`` beside this file.
"""

from replication.migrations.environment import run_migrations

run_migrations()
