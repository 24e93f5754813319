"""Alerts: queue anomalies against their own baselines, tenants' alert rules, storage and publishing."""
