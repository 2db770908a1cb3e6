"""Alembic environment: migrations run on the connection the app hands over (app.history.sql).

The app upgrades the schema itself when it starts; by hand it is
`flask --app app upgrade-history` (same code path).
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
