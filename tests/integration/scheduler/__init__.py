"""Integration tests of the scheduler on real Postgres, Valkey and Tansu."""
