"""The SQL storage adapter: SQLite (default) and PostgreSQL through one SQLAlchemy code path."""
