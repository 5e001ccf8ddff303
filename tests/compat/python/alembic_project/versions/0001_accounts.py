"""accounts table with seed rows"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("balance", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO accounts (id, owner) VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger')")


def downgrade():
    op.drop_table("accounts")
