"""Search that ranks: the folded prompt in its own trigram-indexed column; accent-free text.

`searchable` (prompt and answer) and the new `fold_prompt` hold the text folded as
app.history.query.fold folds it (case and accents dropped, whitespace runs as one space), so a
search for `uber` finds `über` and a prompt match can be told from an answer-only one. Rows
written before are filled in here, a batch at a time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from app.history.sql import search_columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BATCH = 5_000


def _backfill() -> None:
    conn = op.get_bind()
    after = ("", -1)
    for _ in range(10**9):  # until a batch comes back short
        rows = conn.execute(
            sa.text(
                "SELECT day, idx, kind, prompt, response, deleted FROM entries "
                "WHERE (day, idx) > (:day, :idx) ORDER BY day, idx LIMIT :n"
            ),
            {"day": after[0], "idx": after[1], "n": BATCH},
        ).all()
        if rows:
            values = [
                {"d": r.day, "i": r.idx, **search_columns(r.kind, r.prompt, r.response, r.deleted)}
                for r in rows
            ]
            conn.execute(
                sa.text(
                    "UPDATE entries SET searchable = :searchable, fold_prompt = :fold_prompt "
                    "WHERE day = :d AND idx = :i"
                ),
                values,
            )
            after = (rows[-1].day, rows[-1].idx)
        if len(rows) < BATCH:
            return


def upgrade() -> None:
    op.add_column("entries", sa.Column("fold_prompt", sa.Text, nullable=False, server_default=""))
    _backfill()
    op.execute("CREATE INDEX entries_search_prompt ON entries USING gin (fold_prompt gin_trgm_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX entries_search_prompt")
    op.drop_column("entries", "fold_prompt")
