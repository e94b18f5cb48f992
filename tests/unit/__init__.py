"""Tests that need no server: neither a database server nor the AWS emulator."""
