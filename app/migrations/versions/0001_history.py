"""The history: entries with permalinks (day, idx), per-day counters, stream claims.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Trigram indexes make substring search fast at millions of rows. pg_trgm is a trusted
    # extension: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "entries",
        sa.Column("day", sa.Text, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False, server_default=""),
        sa.Column("response", sa.Text, nullable=False, server_default=""),
        sa.Column("model", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("demo", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("image_file", sa.Text),
        sa.Column("usage", JSONB, nullable=False, server_default="{}"),
        sa.Column("options", JSONB, nullable=False, server_default="{}"),
        sa.Column("dimensions", JSONB, nullable=False, server_default="[]"),
        sa.Column("parent", sa.Text),
        sa.Column("root", sa.Text),
        sa.Column("turn", sa.Integer, nullable=False, server_default="1"),
        sa.Column("followups", sa.Integer, nullable=False, server_default="0"),
        sa.Column("context_dropped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("searchable", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("day", "idx", name="entries_pkey"),
        sa.UniqueConstraint("id", name="entries_id_key"),
        sa.CheckConstraint("day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'", name="entries_day_is_a_date"),
        sa.CheckConstraint("idx >= 0", name="entries_idx_not_negative"),
        sa.CheckConstraint("kind IN ('code', 'image')", name="entries_kind"),
    )
    op.execute("CREATE INDEX entries_search ON entries USING gin (searchable gin_trgm_ops)")
    # History's list (live entries that are a conversation's latest turn) and the gallery, both
    # read newest first from a cursor `(day, idx) < (…)`: scanned backwards, the cursor is the
    # index condition.
    op.execute("CREATE INDEX entries_listed ON entries (day, idx) WHERE NOT deleted AND followups = 0")
    op.execute(
        "CREATE INDEX entries_images ON entries (day, idx) "
        "WHERE kind = 'image' AND image_file IS NOT NULL AND NOT deleted"
    )
    op.execute("CREATE INDEX entries_root ON entries (root) WHERE root IS NOT NULL")
    op.create_table(
        "days",
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("next_idx", sa.Integer, nullable=False),
    )
    op.create_table(
        "stream_runs",
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("stream_runs")
    op.drop_table("days")
    op.drop_table("entries")
