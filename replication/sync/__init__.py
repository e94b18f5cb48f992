"""Backfill a consumer from its owner, and reconcile mirrors with their owners."""
