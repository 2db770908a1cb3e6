"""Branches (another version of a turn) and the picture sent with a prompt.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `sibling_of`: the first version of the turn an entry is another version of.
    op.add_column("entries", sa.Column("sibling_of", sa.Text))
    # `branched`: on a conversation's first turn, some turn of it has versions.
    op.add_column("entries", sa.Column("branched", sa.Boolean, nullable=False, server_default=sa.false()))
    # `input_image`: the stored picture sent with the prompt.
    op.add_column("entries", sa.Column("input_image", sa.Text))


def downgrade() -> None:
    op.drop_column("entries", "input_image")
    op.drop_column("entries", "branched")
    op.drop_column("entries", "sibling_of")
