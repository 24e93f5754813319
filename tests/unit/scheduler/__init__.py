"""Unit tests of the scheduler (no servers)."""
