"""Unit tests of the worker (no network)."""
