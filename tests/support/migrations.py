"""The PostgreSQL schema's Alembic revisions, driven from tests: a database brought to an older
revision (as an older version of the app left it) or moved between revisions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from app.history.sql import MIGRATIONS, sqlalchemy_url


def alembic(url: str, step: str, revision: str, *rows: tuple[str, dict[str, Any]]) -> None:
    """Run Alembic's `step` ("upgrade" or "downgrade") to `revision` on the database at `url`,
    then write `rows` (SQL and its parameters) in the same transaction."""
    engine = sa.create_engine(sqlalchemy_url(url))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, revision)
            for statement, params in rows:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()
