"""a column and a data migration"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.add_column("accounts", sa.Column("note", sa.Text))
    op.execute("UPDATE accounts SET balance = id * 10")
    op.execute("UPDATE accounts SET note = owner || ' has ' || balance")


def downgrade():
    op.drop_column("accounts", "note")
