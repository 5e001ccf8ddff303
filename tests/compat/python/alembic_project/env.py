# Alembic environment of the compat suite: one connection from libpq's
# environment, transactional DDL (all migrations of a run in one transaction,
# Alembic's default on PostgreSQL).
from alembic import context
from sqlalchemy import create_engine

engine = create_engine("postgresql+psycopg2://")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
