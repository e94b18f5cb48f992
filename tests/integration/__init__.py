"""Tests against the real database servers (PostgreSQL, MariaDB) and SQLite; no AWS emulator."""
