"""Pending entries, found fast by the reaper of answers interrupted by a server that died.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX entries_pending ON entries (day, idx) WHERE status = 'pending' AND NOT deleted")


def downgrade() -> None:
    op.execute("DROP INDEX entries_pending")
