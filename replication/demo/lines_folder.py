"""Where the example lines are: in the wheel, or in the source tree."""

from __future__ import annotations

__all__ = ["examples_folder"]

from pathlib import Path


def examples_folder() -> Path:
    """The example lines' manifests: shipped in the wheel, or the source tree's ``examples/``.

    A wheel carries the repository's ``contracts/`` and ``examples/`` (their one copy)
    as ``replication/demo/lines/``; an editable install or a checkout reads them in place.
    """
    shipped = Path(__file__).resolve().parent / "lines"
    if (shipped / "examples").is_dir():
        return shipped / "examples"
    return Path(__file__).resolve().parents[2] / "examples"
