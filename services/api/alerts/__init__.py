"""Alerts and alert rules as the api shows and takes them (DESIGN §5)."""
