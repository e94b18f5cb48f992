"""Where the checkout's folders are, wherever a test module sits."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root folder."""
EVENTS = ROOT / "tests" / "events"
"""The Lambda events kept as they reach a function."""
