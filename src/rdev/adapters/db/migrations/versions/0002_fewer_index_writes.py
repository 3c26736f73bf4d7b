"""fewer index writes per claim and completion

builds: drop the status index, leave room on each page for in-place updates.

Every build row is updated twice on its way through the queue (claimed, finished). With
no index on a column those updates change, and free room on the row's page, PostgreSQL
updates it in place (a "HOT" update) without touching any index. The status index was
the one index every status change paid for (a low-cardinality B-tree, costly to insert
into); listing by status walks the (project_id, id) index or the primary key instead.

work_tasks: drop the lease index. A claim rewrites the task row, so every index on the
table is written again; the claim index (state first) already finds the leased tasks the
reaper and completions look for, and those are only the few tasks in flight.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 02:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Half of each heap page stays free for the claimed and finished versions of its rows.
BUILDS_FILLFACTOR = 50


def upgrade() -> None:
    op.drop_index("ix_builds_status", table_name="builds")
    op.drop_index("ix_work_tasks_lease", table_name="work_tasks")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE builds SET (fillfactor = {BUILDS_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE builds RESET (fillfactor)")
    op.create_index("ix_builds_status", "builds", ["status"])
    op.create_index("ix_work_tasks_lease", "work_tasks", ["state", "lease_expires_at"])
