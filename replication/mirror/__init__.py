"""Mirror tables and the version-guarded apply.

``mirror_table`` and ``statements_for`` need SQLAlchemy; ``apply_changes``
does not, so a Lambda can apply with statements rendered ahead of time.
Import those from their modules; this package exports only the light parts.
"""

from replication.mirror.apply import apply_changes, dialect_of
from replication.mirror.decide import ApplyResult, reduce_batch

__all__ = ["ApplyResult", "apply_changes", "dialect_of", "reduce_batch"]
