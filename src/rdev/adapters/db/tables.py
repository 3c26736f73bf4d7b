"""Table definitions (SQLAlchemy Core). Alembic migrations must produce exactly this schema."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

#: BIGINT identity on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


projects = Table(
    "projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("repo_url", Text, nullable=False),
    Column("default_branch", String(255), nullable=False),
    Column("git_credential", Text, nullable=True),
    Column("default_agent", String(64), nullable=True),
    Column("labels", JSON, nullable=False, default=list),
    Column("settings", JSON, nullable=False, default=dict),
    Column("ci_token", Text, nullable=True),
    Column("webhook_secret", Text, nullable=True),
    Column("repo_host", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False, unique=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("retries", Integer, nullable=False, default=0),
    Column("worker_id", String(32), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("rendered_prompt", Text, nullable=True),
    Column("template_name", String(128), nullable=True),
    Column("template_version", String(64), nullable=True),
    Column("agent_info", JSON, nullable=True),
    Column("ci", JSON, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("created_by", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    UniqueConstraint("project_id", "idempotency_key", name="uq_builds_idempotency"),
    Index("ix_builds_project_id_id", "project_id", "id"),
    # No index on status (migration 0002): claims and completions then update rows in
    # place, and half of each page is kept free for those new row versions.
    postgresql_with={"fillfactor": 50},
)

#: The work queue: one row per build that still has work to hand out or in flight.
work_tasks = Table(
    "work_tasks",
    metadata,
    Column("build_id", Id, ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(40), nullable=False, unique=True),
    Column("state", String(16), nullable=False),  # queued | leased
    Column("agent", String(64), nullable=False),
    Column("labels", JSON, nullable=False, default=list),
    #: Sorted, comma-joined labels ("" for none): lets SQL pick label-free tasks cheaply.
    Column("labels_key", String(512), nullable=False, default=""),
    Column("available_at", UTCDateTime, nullable=False),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("worker_id", String(32), nullable=True),
    # Also serves the reaper and completions (state = 'leased': the few tasks in flight),
    # so a claim, which rewrites the row, updates one index fewer (migration 0002).
    Index("ix_work_tasks_claim", "state", "agent", "available_at", "build_id"),
)

build_events = Table(
    "build_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("build_id", Id, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Index("ix_build_events_build", "build_id", "id"),
)

build_logs = Table(
    "build_logs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("build_id", Id, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("stream", String(16), nullable=False, default="out"),
    Column("text", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("build_id", "seq", name="uq_build_logs_seq"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("hostname", String(255), nullable=True),
    Column("labels", JSON, nullable=False, default=list),
    Column("agents", JSON, nullable=False, default=list),
    Column("agent_notes", JSON, nullable=False, default=dict),
    Column("slots", Integer, nullable=False, default=1),
    Column("version", String(64), nullable=True),
    Column("current_tasks", JSON, nullable=False, default=list),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("last_heartbeat_at", UTCDateTime, nullable=True),
    Column("stopped_at", UTCDateTime, nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    Column("projects", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("build_id", Id, ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_build", "build_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        String(40),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("response_excerpt", Text, nullable=True),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

domains = Table(
    "domains",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(253), nullable=False, unique=True),
    Column("unicode", String(253), nullable=False),
    Column("target", String(253), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("scope", String(128), primary_key=True),
    Column("response", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

ci_links = Table(
    "ci_links",
    metadata,
    Column("build_id", Id, ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True),
    Column("commit_sha", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # searching | following | done | gave_up
    Column("next_check_at", UTCDateTime, nullable=False),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("checks", Integer, nullable=False, default=0),
    Index("ix_ci_links_due", "state", "next_check_at"),
)
