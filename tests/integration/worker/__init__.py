"""The worker against real Valkey and Tansu."""
