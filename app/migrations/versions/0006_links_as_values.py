"""An entry's links to other entries as (day, idx) pairs instead of permalink text.

`parent`, `root` and `sibling_of` held `/chatlog/<date>/<index>` text; each becomes a pair of
columns, `<name>_day` (text) and `<name>_idx` (integer), both NULL for no link (a check says
so), filled here from the text. Text that names no entry there can be (malformed, or an index
past the integer range) becomes no link, as the app read it. The index of a conversation's turns
moves from `root` to `(root_day, root_idx)`; History and the conversations compare the pairs.
The downgrade writes the text back from the pairs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LINKS = ("parent", "root", "sibling_of")
# What Permalink.parse reads: `/chatlog/<date>/<index>` (or `<date>/<index>`), ASCII digits.
PERMALINK = r"^(?:/chatlog/)?([0-9]{4}-[0-9]{2}-[0-9]{2})/([0-9]{1,10})$"
MAX_INDEX = 2**31 - 1


def upgrade() -> None:
    for name in LINKS:
        op.add_column("entries", sa.Column(f"{name}_day", sa.Text))
        op.add_column("entries", sa.Column(f"{name}_idx", sa.Integer))
        op.execute(
            sa.text(
                f"UPDATE entries SET {name}_day = old.m[1], {name}_idx = old.m[2]::integer "
                f"FROM (SELECT day, idx, regexp_match({name}, :pattern) AS m FROM entries "
                f"WHERE {name} IS NOT NULL) AS old "
                "WHERE entries.day = old.day AND entries.idx = old.idx AND old.m IS NOT NULL "
                "AND old.m[2]::bigint <= :max_index"
            ).bindparams(pattern=PERMALINK, max_index=MAX_INDEX)
        )
        op.create_check_constraint(
            f"entries_{name}_link", "entries", f"({name}_day IS NULL) = ({name}_idx IS NULL)"
        )
    op.execute("DROP INDEX entries_root")
    for name in LINKS:
        op.drop_column("entries", name)
    op.execute("CREATE INDEX entries_root ON entries (root_day, root_idx) WHERE root_day IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX entries_root")
    for name in LINKS:
        op.add_column("entries", sa.Column(name, sa.Text))
        op.execute(
            f"UPDATE entries SET {name} = '/chatlog/' || {name}_day || '/' || {name}_idx "
            f"WHERE {name}_day IS NOT NULL"
        )
        op.drop_constraint(f"entries_{name}_link", "entries", type_="check")
        op.drop_column("entries", f"{name}_idx")
        op.drop_column("entries", f"{name}_day")
    op.execute("CREATE INDEX entries_root ON entries (root) WHERE root IS NOT NULL")
