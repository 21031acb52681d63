"""Alembic environment: Kirby runs migrations programmatically (see `kirby_core.db.migrate`).

The URL and options come from `config.attributes`, never from the environment.
"""

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
engine = create_engine(config.attributes["url"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
