"""A failure stored as its kind and values, so each reader sees it in their language.

`error_kind` names the failure (a key of app.messages.FAILURES) and `error_params` holds the
values of its message; `error` keeps the English sentence for the exports and the JSON API.
Rows written before have neither: their sentence is shown as it is (translated where the
catalogue has it), so nothing needs filling in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entries", sa.Column("error_kind", sa.Text))
    op.add_column("entries", sa.Column("error_params", JSONB, nullable=False, server_default="{}"))


def downgrade() -> None:
    op.drop_column("entries", "error_params")
    op.drop_column("entries", "error_kind")
