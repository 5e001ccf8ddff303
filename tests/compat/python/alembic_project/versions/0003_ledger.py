"""a second table with a foreign key, an index, a backfill from people"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
    )
    op.create_index("ledger_account", "ledger", ["account_id"])
    op.execute("INSERT INTO ledger (account_id, amount) SELECT id, balance FROM accounts")
    # A backfill from a table with a masked column that does not read it.
    op.execute("UPDATE accounts a SET owner = p.name FROM people p WHERE p.id = a.id")


def downgrade():
    op.drop_index("ledger_account")
    op.drop_table("ledger")
