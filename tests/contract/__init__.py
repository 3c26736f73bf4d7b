"""Contract tests: one suite per storage port, run against the fake, SQLite and PostgreSQL."""
